"""The assembled SFE: parameter counts (docs/decisions.md#parameter-counts), memory variants, dtypes and a jitted tiny forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from macl_jax.models.sfe import SFESizes, SpeechFeatureExtractor
from macl_jax.models.speech import MemorySlots
from macl_jax.train.state import split_model


def n_params(module, kind=nnx.Param) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, kind)))


def abstract_sfe(sizes, **kw):
    return nnx.eval_shape(lambda: SpeechFeatureExtractor(sizes, rngs=nnx.Rngs(0), **kw))


def test_full_preset_counts_match_spec_8_1():
    sfe = abstract_sfe(SFESizes.full(), memory="cs")
    sp = sfe.speech
    measured = {
        "wav_encoder": n_params(sp.encoder),
        "bigru": n_params(sp.gru),
        "addressing_heads": n_params(sp.content_memory.head) + n_params(sp.identity_memory.head),
        "banks": n_params(sfe, MemorySlots),
        "backbone": n_params(sfe.backbone),
        "visual_heads": n_params(sfe.video_content_head) + n_params(sfe.video_identity_head),
        "total": n_params(sfe),
    }
    spec = {  # docs/decisions.md#parameter-counts; the 4 LossScale scalars belong to the loss module
        "wav_encoder": 786_480,
        "bigru": 2_365_440,
        "addressing_heads": 394_496,
        "banks": 131_072,
        "backbone": 14_057_536,
        "visual_heads": 1_115_136,
        "total": 18_850_164 - 4,
    }
    for name, value in spec.items():
        assert abs(measured[name] - value) <= 0.01 * value, (name, measured[name], value)
    # Batch-norm running statistics are not trainable parameters.
    assert n_params(sfe, nnx.BatchStat) > 0


def test_memory_variants_differ_only_by_the_memory():
    models = {m: abstract_sfe(SFESizes.full(), memory=m) for m in ("cs", "w", "wo")}
    counts = {m: n_params(model) for m, model in models.items()}
    banks = {m: len(jax.tree.leaves(nnx.state(model, MemorySlots))) for m, model in models.items()}
    assert banks == {"cs": 2, "w": 1, "wo": 0}
    assert counts["cs"] - counts["w"] == 512 * 128  # the identity bank
    # "wo": heads end in 128 (C) instead of 512 (k) outputs and there are no banks.
    assert counts["cs"] - counts["wo"] == 2 * 512 * 128 + 2 * (128 * 512 + 512 - (128 * 128 + 128))


def test_full_preset_video_shapes_and_mixed_precision_dtypes():
    sfe = abstract_sfe(SFESizes.full(), dtype=jnp.bfloat16)
    assert {x.dtype for x in jax.tree.leaves(nnx.state(sfe, nnx.Param))} == {jnp.dtype(jnp.float32)}
    graphdef, state = nnx.split(sfe)
    out = jax.eval_shape(
        lambda s, a, v: nnx.merge(graphdef, s)(a, v, train=False),
        state,
        jax.ShapeDtypeStruct((2, 3, 20, 80), jnp.float32),
        jax.ShapeDtypeStruct((2, 3, 5, 256, 256, 3), jnp.float32),
    )
    assert {k: v.shape for k, v in out.items()} == {
        "audio_content": (2, 3, 128),
        "audio_identity": (2, 3, 128),
        "video_content": (2, 3, 128),
        "video_identity": (2, 3, 128),
        "audio_content_address": (2, 3, 512),
        "audio_identity_address": (2, 3, 512),
    }
    assert all(v.dtype == jnp.float32 for v in out.values())  # everything feeding the losses


def test_bad_inputs_raise_clear_errors():
    full = abstract_sfe(SFESizes.full())
    with pytest.raises(ValueError, match="193-256 px.*global"):
        full.encode_video(jnp.zeros((1, 2, 5, 128, 128, 3)), train=False)
    with pytest.raises(ValueError, match="share"):
        full(jnp.zeros((1, 2, 20, 80)), jnp.zeros((1, 3, 5, 256, 256, 3)), train=False)
    with pytest.raises(ValueError, match="5, height, width, 3"):
        full.encode_video(jnp.zeros((1, 2, 5, 256, 256)), train=False)


def numpy_filled_state(abstract_state, seed=0):
    """Parameters drawn with numpy (BN at its init values) for a model built with eval_shape.

    The modules' own inits are tested in test_speech/test_video3d; building the tiny SFE with them
    here would add ~50 threefry compilations (tens of seconds on a busy 2-core CPU).
    """
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = jax.tree_util.keystr(path)
        if any(f"['{k}']" in name for k in ("scale", "var")):
            return jnp.ones(leaf.shape, leaf.dtype)
        if leaf.ndim < 2:
            return jnp.zeros(leaf.shape, leaf.dtype)
        fan_in = 1 if "slots" in name else int(np.prod(leaf.shape[:-1]))
        return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(fan_in), leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract_state)


def test_tiny_preset_forward_under_jit():
    sizes = SFESizes.tiny()
    graphdef, params, rest = split_model(abstract_sfe(sizes))  # no RNG state kept in the model
    state = nnx.merge_state(numpy_filled_state(params), numpy_filled_state(rest))

    @jax.jit
    def train_forward(state, audio, frames, key):
        model = nnx.merge(graphdef, state)
        return model(audio, frames, train=True, rngs=nnx.Rngs(dropout=key)), nnx.state(model)

    rng = np.random.default_rng(0)
    audio = jnp.asarray(rng.uniform(size=(2, 4, 20, 80)), jnp.float32)
    frames = jnp.asarray(rng.normal(size=(2, 4, 5, 48, 48, 3)), jnp.float32)
    out, new_state = train_forward(state, audio, frames, jax.random.key(1))
    C, k = sizes.speech.slot_dim, sizes.speech.slots
    assert {key: v.shape for key, v in out.items()} == {
        "audio_content": (2, 4, C),
        "audio_identity": (2, 4, C),
        "video_content": (2, 4, C),
        "video_identity": (2, 4, C),
        "audio_content_address": (2, 4, k),
        "audio_identity_address": (2, 4, k),
    }
    assert all(np.all(np.isfinite(v)) for v in out.values())
    # Training updates the batch-norm running statistics of both branches.
    old = nnx.state(nnx.merge(graphdef, state), nnx.BatchStat)
    new = nnx.state(nnx.merge(graphdef, new_state), nnx.BatchStat)
    for branch in ("speech", "backbone"):
        pairs = list(zip(jax.tree.leaves(old[branch]), jax.tree.leaves(new[branch])))
        assert all(not np.allclose(a, b) for a, b in pairs), branch
    # Dropout draws from the given stream (no recompilation: the key is an argument).
    other, _ = train_forward(state, audio, frames, jax.random.key(2))
    assert not np.allclose(other["video_content"], out["video_content"])
    assert not np.allclose(other["audio_content"], out["audio_content"])


@pytest.mark.slow
def test_tiny_preset_gradients_reach_every_parameter():
    sizes = SFESizes.tiny()
    model = SpeechFeatureExtractor(sizes, rngs=nnx.Rngs(0))  # the real init this time
    graphdef, params, rest = split_model(model)
    rng = np.random.default_rng(1)
    audio = jnp.asarray(rng.uniform(size=(3, 5, 20, 80)), jnp.float32)
    frames = jnp.asarray(rng.normal(size=(3, 5, 5, 32, 32, 3)), jnp.float32)

    @jax.jit
    def grads(params, rest, key):
        def loss(params, rest):  # rest is an argument so BatchStat updates happen at this trace level
            out = nnx.merge(graphdef, params, rest, copy=True)(audio, frames, train=True, rngs=nnx.Rngs(dropout=key))
            cos = lambda a, b: jnp.sum(a * b, -1) / (jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1))
            return -jnp.mean(cos(out["audio_content"], out["video_content"])) - jnp.mean(
                cos(out["audio_identity"], out["video_identity"])
            )

        return jax.grad(loss)(params, rest)

    g = grads(params, rest, jax.random.key(0))
    flat = jax.tree_util.tree_flatten_with_path(g)[0]
    assert all(np.all(np.isfinite(v)) for _, v in flat)
    dead = [jax.tree_util.keystr(p) for p, v in flat if not np.any(v)]
    assert not dead, dead
