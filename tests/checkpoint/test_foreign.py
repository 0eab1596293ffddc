"""torch checkpoints read without torch, against golden fixtures from tests/assets/torch/make_fixtures.py."""

import os
import pickle
import zipfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from macl_jax import checkpoint
from macl_jax.checkpoint import foreign

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "torch"


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(ASSETS / "expected.npz") as f:
        return dict(f)


@pytest.fixture(scope="module")
def tensors() -> dict[str, np.ndarray]:
    return foreign.read_torch_tensors(ASSETS / "scripted.pt")


@pytest.mark.parametrize(
    "file, prefix", [("state_dict.pt", "model."), ("scripted.pt", ""), ("module.pt", "")]
)
def test_tensors_are_bit_exact(file, prefix, expected):
    got = foreign.read_torch_tensors(ASSETS / file)
    names = [k.removesuffix(":bits") for k in expected if not k.startswith("io.")]
    assert list(got) == [prefix + n for n in names]  # state_dict order, nothing extra
    for key in names:
        array = got[prefix + key]
        if key + ":bits" in expected:  # npz has no bfloat16: compare the bits
            assert array.dtype.name == "bfloat16"
            array, key = array.view(np.uint16), key + ":bits"
        assert (array.dtype, array.shape) == (expected[key].dtype, expected[key].shape), key
        assert array.tobytes() == expected[key].tobytes(), key
    assert got[prefix + "fp16"].dtype == np.float16
    assert got[prefix + "bn.num_batches_tracked"].dtype == np.int64
    assert got[prefix + "bn.num_batches_tracked"] == 7
    # A transposed slice at storage offset 8 of base's storage.
    np.testing.assert_array_equal(got[prefix + "view"], got[prefix + "base"][1:3, 2:5].T)


def _filled(layer: nnx.Module, tensors, mapping) -> nnx.Module:
    nnx.update(layer, foreign.assign(nnx.state(layer), tensors, mapping))
    return layer


def _nchw(y: np.ndarray) -> np.ndarray:
    return np.moveaxis(np.asarray(y), -1, 1)


def _nhwc(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, 1, -1)


def test_converted_layers_reproduce_torch(tensors, expected):
    rngs = nnx.Rngs(0)
    conv2d = _filled(
        nnx.Conv(3, 4, (3, 3), strides=2, padding=((1, 1), (1, 1)), rngs=rngs),
        tensors,
        {"kernel": ("conv2d.weight", foreign.conv_kernel), "bias": ("conv2d.bias", None)},
    )
    conv3d = _filled(
        nnx.Conv(2, 3, (2, 3, 3), padding=((0, 0), (1, 1), (1, 1)), use_bias=False, rngs=rngs),
        tensors,
        {"kernel": ("conv3d.weight", foreign.conv_kernel)},
    )
    linear = _filled(
        nnx.Linear(5, 6, rngs=rngs),
        tensors,
        {"kernel": ("linear.weight", foreign.linear_kernel), "bias": ("linear.bias", None)},
    )
    # torch ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1): pad (k-1-p, k-1-p+op).
    conv_t = _filled(
        nnx.ConvTranspose(4, 3, (3, 3), strides=2, padding=((1, 2), (1, 2)), rngs=rngs),
        tensors,
        {"kernel": ("conv_t.weight", foreign.conv_transpose_kernel), "bias": ("conv_t.bias", None)},
    )
    for name, layer, channels_first in [
        ("conv2d", conv2d, True),
        ("conv3d", conv3d, True),
        ("linear", linear, False),
        ("conv_t", conv_t, True),
    ]:
        x, y = expected[f"io.{name}.x"], expected[f"io.{name}.y"]
        out = layer(jnp.asarray(_nhwc(x) if channels_first else x))
        out = _nchw(out) if channels_first else np.asarray(out)
        assert out.shape == y.shape, name
        np.testing.assert_allclose(out, y, rtol=1e-5, atol=1e-5, err_msg=name)


class _Net(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.head = nnx.Linear(5, 6, param_dtype=jnp.bfloat16, rngs=rngs)


def test_assign_fills_mapped_leaves_only(tensors):
    net = _Net(nnx.Rngs(0))
    state = nnx.state(net)
    before = {k: np.asarray(v.get_value()) for k, v in state.flat_state()}
    mapping = {
        "conv/kernel": ("conv2d.weight", foreign.conv_kernel),
        "bn/scale": ("bn.weight", None),
        "bn/bias": ("bn.bias", None),
        "bn/mean": ("bn.running_mean", None),
        "bn/var": ("bn.running_var", None),
        "head/kernel": ("linear.weight", foreign.linear_kernel),
    }
    new = dict(foreign.assign(state, tensors, mapping).flat_state())
    np.testing.assert_array_equal(new[("conv", "kernel")].get_value(), foreign.conv_kernel(tensors["conv2d.weight"]))
    np.testing.assert_array_equal(new[("bn", "var")].get_value(), tensors["bn.running_var"])
    assert isinstance(new[("bn", "mean")], nnx.BatchStat)
    head = new[("head", "kernel")].get_value()
    assert head.dtype == jnp.bfloat16  # cast to the leaf's dtype
    np.testing.assert_array_equal(head, foreign.linear_kernel(tensors["linear.weight"]).astype(jnp.bfloat16))
    np.testing.assert_array_equal(new[("conv", "bias")].get_value(), before[("conv", "bias")])  # unmapped
    for path, leaf in state.flat_state():  # the input state is left alone
        np.testing.assert_array_equal(leaf.get_value(), before[path])
    left = foreign.unused(tensors, mapping)
    assert "conv2d.bias" in left and "bn.num_batches_tracked" in left and "conv2d.weight" not in left
    assert len(left) == len(tensors) - len(mapping)


def test_assign_reports_every_problem_at_once(tensors):
    state = nnx.state(_Net(nnx.Rngs(0)))
    mapping = {
        "conv/kernel": ("conv2d.weigth", foreign.conv_kernel),  # typo
        "conv/bias": ("linear.bias", None),  # (6,) into (4,)
        "head/kernal": ("linear.weight", foreign.linear_kernel),  # no such flax leaf
        "head/bias": ("linear.bias", foreign.conv_kernel),  # converter rejects a 1-D tensor
        "bn/scale": ("bn.weight", None),  # fine
    }
    with pytest.raises(foreign.ForeignCheckpointError) as err:
        foreign.assign(state, tensors, mapping)
    msg = str(err.value)
    assert "4 problem(s)" in msg
    assert "'conv2d.weigth'" in msg and "did you mean ['conv2d.weight'" in msg
    assert "shape (6,)" in msg and "wants (4,)" in msg
    assert "'head/kernal' is not in the state" in msg and "head/kernel" in msg
    assert "converter failed" in msg and "'head/bias'" in msg


def test_refuses_legacy_and_non_torch_files(tmp_path):
    with pytest.raises(foreign.ForeignCheckpointError, match=r"legacy.pt: a legacy .*torch>=1.6"):
        foreign.read_torch_tensors(ASSETS / "legacy.pt")
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(foreign.ForeignCheckpointError, match="notes.pt: not a torch checkpoint"):
        foreign.read_torch_tensors(text)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("a/readme.txt", "x")
    with pytest.raises(foreign.ForeignCheckpointError, match="other.zip: a zip archive but not a torch one"):
        foreign.read_torch_tensors(other)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_unpickling_runs_no_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive = tmp_path / "evil.pt"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("evil/data.pkl", pickle.dumps({"payload": _Evil()}, protocol=2))
    assert foreign.read_torch_tensors(archive) == {}
    assert not (tmp_path / "pwned").exists()


def test_converters_reject_wrong_ranks():
    with pytest.raises(ValueError, match=r"conv_kernel: .*\(4, 3\)"):
        foreign.conv_kernel(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="linear_kernel"):
        foreign.linear_kernel(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="conv_transpose_kernel"):
        foreign.conv_transpose_kernel(np.zeros(3))


def test_the_package_exports_every_public_name_of_foreign():
    public = {n for n, v in vars(foreign).items() if not n.startswith("_") and getattr(v, "__module__", None) == foreign.__name__}
    assert sorted(public) == sorted(foreign.__all__)
    assert all(getattr(checkpoint, n) is getattr(foreign, n) for n in public)
