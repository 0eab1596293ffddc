import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from macl_jax.config import load_config
from macl_jax.models.mdn import LandmarkMDN, MDNSizes
from macl_jax.models.sfe import SFESizes
from macl_jax.models.speech import SpeechSizes

# docs/decisions.md#parameter-counts with docs/decisions.md#d1-mdn-speech-branch:
# WavEncoder 786,480 + Bi-GRU(512) 2,365,440 + two addressing
# heads 394,496 + two 512x128 banks 131,072 + two final BN(128) 512, and the M = 3 MixNet of
# 247,399 less its unused BatchNorm(64) (128 parameters).
D1_TOTAL_SHARED_SIGMA = 786_480 + 2_365_440 + 394_496 + 131_072 + 512 + (247_399 - 128)


SMALL_SPEECH = SpeechSizes(encoder_channels=(4, 4, 4, 4, 8), gru_hidden=8, slots=6, slot_dim=8, head_hidden=8)


def _count(model) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _full_sizes(**kw) -> MDNSizes:
    return MDNSizes(speech=SFESizes.full().speech, **kw)


def test_full_size_parameter_count_matches_the_spec():
    model = nnx.eval_shape(lambda: LandmarkMDN(_full_sizes(sigma="shared"), rngs=nnx.Rngs(0)))
    assert _count(model) == D1_TOTAL_SHARED_SIGMA
    # Separate sigmas for landmarks / angle / offset add 2 outputs per component to the sigma head.
    iso = nnx.eval_shape(lambda: LandmarkMDN(_full_sizes(sigma="isotropic"), rngs=nnx.Rngs(0)))
    assert _count(iso) == D1_TOTAL_SHARED_SIGMA + 3 * 2 * (320 + 1)


@pytest.mark.parametrize("regression,dims", [("tt", 139), ("a", 136)])
@pytest.mark.parametrize("sigma,columns", [("isotropic", None), ("diagonal", "dims"), ("shared", 1)])
def test_output_shapes(regression, dims, sigma, columns):
    sizes = MDNSizes(speech=SMALL_SPEECH, components=2, reference_embed=4, regression=regression, sigma=sigma)
    model = LandmarkMDN(sizes, rngs=nnx.Rngs(0))
    out = model(jnp.zeros((3, 7, 20, 80)), jnp.zeros((3, 68, 2)), train=False)
    groups = 3 if regression == "tt" else 1
    expected_columns = {None: groups, "dims": dims, 1: 1}[columns]
    assert out["mu"].shape == (3, 7, 2, dims)
    assert out["sigma_raw"].shape == (3, 7, 2, expected_columns)
    assert out["logits"].shape == (3, 7, 2)
    assert out["content_address"].shape == (3, 7, 6)
    assert all(v.dtype == jnp.float32 for v in out.values())


def test_reference_landmarks_change_the_output_and_bad_shapes_are_refused():
    sizes = MDNSizes(speech=SMALL_SPEECH, reference_embed=4)
    model = LandmarkMDN(sizes, rngs=nnx.Rngs(0))
    audio = jax.random.uniform(jax.random.key(1), (2, 5, 20, 80))
    a = model(audio, jnp.zeros((2, 68, 2)), train=False)["mu"]
    b = model(audio, jnp.ones((2, 68, 2)), train=False)["mu"]
    assert float(jnp.max(jnp.abs(a - b))) > 1e-4
    with pytest.raises(ValueError, match="reference landmarks"):
        model(audio, jnp.zeros((2, 136)), train=False)
    with pytest.raises(ValueError, match="regression"):
        MDNSizes(regression="direct")


def test_reference_pose_conditioning_changes_the_output_and_needs_the_pose():
    small = dict(speech=SMALL_SPEECH, reference_embed=4)
    plain = LandmarkMDN(MDNSizes(**small), rngs=nnx.Rngs(0))
    model = LandmarkMDN(MDNSizes(**small, reference_pose=True), rngs=nnx.Rngs(0))
    # BN(3) and Linear(3 -> 4) on top of the plain model.
    assert _count(model) - _count(plain) == 2 * 3 + (3 * 4 + 4)
    audio = jax.random.uniform(jax.random.key(1), (2, 5, 20, 80))
    reference = jax.random.normal(jax.random.key(2), (2, 68, 2))
    # Untrained running statistics are (0, 1), so the pose enters as it is.
    a = model(audio, reference, jnp.zeros((2, 3)), train=False)["mu"]
    b = model(audio, reference, jnp.array([[0.1, 0.05, -0.05], [-0.1, 0.0, 0.02]]), train=False)["mu"]
    assert float(jnp.max(jnp.abs(a - b))) > 1e-4
    with pytest.raises(ValueError, match="reference pose"):
        model(audio, reference, train=False)
    with pytest.raises(ValueError, match="reference_pose=False"):
        MDNSizes(**small, regression="a", reference_pose=True)


def test_zero_pose_init_starts_from_the_static_head():
    small = dict(speech=SMALL_SPEECH, reference_embed=4, components=3)
    audio = jax.random.uniform(jax.random.key(1), (2, 5, 20, 80))
    reference = jax.random.normal(jax.random.key(2), (2, 68, 2))
    zero = LandmarkMDN(MDNSizes(**small, zero_pose_init=True), rngs=nnx.Rngs(0))(audio, reference, train=False)["mu"]
    kaiming = LandmarkMDN(MDNSizes(**small), rngs=nnx.Rngs(0))(audio, reference, train=False)["mu"]
    assert float(jnp.max(jnp.abs(zero[..., 136:]))) == 0.0  # angle and offset of every component
    assert float(jnp.min(jnp.abs(kaiming[..., 136:]))) > 0.0
    np.testing.assert_array_equal(np.asarray(zero[..., :136]), np.asarray(kaiming[..., :136]))
    with pytest.raises(ValueError, match="zero_pose_init"):
        MDNSizes(**small, regression="a", zero_pose_init=True)


def test_sizes_from_the_configs_share_the_sfe_speech_sizes():
    """Each MDN preset reads the speech sizes of the SFE preset it is initialised from; f_a drops the
    pose settings that only f_tt has."""
    for mdn_preset, sfe_preset in (("tiny", "tiny"), ("cpu", "cpu"), ("full", "full")):
        mdn = MDNSizes.from_config(load_config(f"configs/mdn.py:{mdn_preset}").model)
        sfe = SFESizes.from_config(load_config(f"configs/sfe.py:{sfe_preset}").model)
        assert mdn.speech == sfe.speech, mdn_preset
    assert SFESizes.from_config(load_config("configs/sfe.py:full").model) == SFESizes.full()
    tt = MDNSizes.from_config(load_config("configs/mdn.py:cpu").model)
    fa = MDNSizes.from_config(load_config("configs/mdn.py:cpu_fa").model)
    assert tt.reference_pose and tt.zero_pose_init
    assert fa.regression == "a" and not fa.reference_pose and not fa.zero_pose_init
