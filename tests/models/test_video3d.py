"""The resnet18_2d3d backbone and the visual heads (docs/decisions.md#sfe-architecture) vs numpy and the reference layer shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from macl_jax.models.video3d import BasicBlock, ResNet2d3d, VisualHead


def n_params(module) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def abstract(fn):
    return nnx.eval_shape(lambda: fn(nnx.Rngs(0)))


def shapes_of(module, method, *args):
    graphdef, state = nnx.split(module)
    return jax.eval_shape(lambda s, *a: method(nnx.merge(graphdef, s), *a), state, *args)


def np_conv3d(x, w, stride, pad, bias=None):
    """Direct NDHWC cross-correlation with zero padding, as PyTorch's Conv3d."""
    x = np.pad(x, [(0, 0)] + [(p, p) for p in pad] + [(0, 0)])
    k = w.shape[:3]
    out_sz = [(x.shape[1 + i] - k[i]) // stride[i] + 1 for i in range(3)]
    y = np.zeros((x.shape[0], *out_sz, w.shape[-1]))
    for a in range(k[0]):
        for b in range(k[1]):
            for c in range(k[2]):
                patch = x[
                    :,
                    a : a + stride[0] * out_sz[0] : stride[0],
                    b : b + stride[1] * out_sz[1] : stride[1],
                    c : c + stride[2] * out_sz[2] : stride[2],
                ]
                y += patch @ w[a, b, c]
    return y if bias is None else y + bias


def np_bn_eval(x, bn):
    g = lambda v: np.asarray(v[...], np.float64)
    return (x - g(bn.mean)) / np.sqrt(g(bn.var) + 1e-5) * g(bn.scale) + g(bn.bias)


def randomise_batch_norms(module, seed):
    """Non-trivial running statistics and affine parameters, so eval-mode BN is really tested."""
    rng = np.random.default_rng(seed)
    for _, bn in nnx.iter_graph(module):
        if isinstance(bn, nnx.BatchNorm):
            c = bn.mean.shape[0]
            bn.mean[...] = jnp.asarray(rng.normal(size=c), jnp.float32)
            bn.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, size=c), jnp.float32)
            bn.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, size=c), jnp.float32)
            bn.bias[...] = jnp.asarray(rng.normal(size=c), jnp.float32)


def test_full_backbone_shapes_follow_spec_table():
    net = abstract(lambda r: ResNet2d3d((64, 128, 256, 256), rngs=r))
    maps = shapes_of(net, lambda m, x: m.feature_maps(x, train=False), jax.ShapeDtypeStruct((1, 5, 256, 256, 3), jnp.float32))
    expected = {  # reference layer shapes (C, T, H, W) written as (T, H, W, C)
        "stem": (5, 128, 128, 64),
        "pool": (5, 64, 64, 64),
        "layer1": (5, 64, 64, 64),
        "layer2": (5, 32, 32, 128),
        "layer3": (3, 16, 16, 256),
        "layer4": (2, 8, 8, 256),
    }
    assert {k: v.shape[1:] for k, v in maps.items()} == expected
    at224 = shapes_of(net, lambda m, x: m(x, train=False), jax.ShapeDtypeStruct((1, 5, 224, 224, 3), jnp.float32))
    assert at224.shape == (1, 2, 7, 7, 256)


def test_full_backbone_parameter_counts_per_stage():
    net = abstract(lambda r: ResNet2d3d((64, 128, 256, 256), rngs=r))
    stem = n_params(net.stem) + n_params(net.stem_bn)
    per_layer = [n_params(layer) for layer in net.layers]
    assert stem == 9_536
    assert per_layer == [147_968, 525_568, 6_228_480, 7_145_984]
    assert n_params(net) == 14_057_536


@pytest.mark.parametrize("temporal,stride", [(False, 2), (True, 2), (True, 1)])
def test_basic_block_matches_numpy(temporal, stride):
    c_in, c_out = 3, 4 if stride != 1 else 3
    block = BasicBlock(c_in, c_out, stride, temporal=temporal, dtype=jnp.float32, param_dtype=jnp.float32, rngs=nnx.Rngs(0))
    randomise_batch_norms(block, 1)
    x = np.random.default_rng(2).normal(size=(2, 5, 7, 6, c_in)).astype(np.float32)
    y = np.asarray(block(jnp.asarray(x), train=False))
    w = lambda conv: np.asarray(conv.kernel[...], np.float64)
    s3 = (stride,) * 3 if temporal else (1, stride, stride)
    pad = (1, 1, 1) if temporal else (0, 1, 1)
    h = np.maximum(np_bn_eval(np_conv3d(x, w(block.conv1), s3, pad), block.bn1), 0)
    h = np_bn_eval(np_conv3d(h, w(block.conv2), (1, 1, 1), pad), block.bn2)
    short = x if block.proj is None else np_bn_eval(np_conv3d(x, w(block.proj), s3, (0, 0, 0)), block.proj_bn)
    ref = np.maximum(h + short, 0)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, atol=1e-4, rtol=1e-4)
    assert (block.proj is None) == (stride == 1 and c_in == c_out)


def test_stem_and_max_pool_match_numpy():
    net = ResNet2d3d((4, 4, 8, 8), rngs=nnx.Rngs(0))
    randomise_batch_norms(net, 3)
    x = np.random.default_rng(4).normal(size=(1, 2, 13, 11, 3)).astype(np.float32)
    maps = net.feature_maps(jnp.asarray(x), train=False)
    stem = np.maximum(np_bn_eval(np_conv3d(x, np.asarray(net.stem.kernel[...], np.float64), (1, 2, 2), (0, 3, 3)), net.stem_bn), 0)
    np.testing.assert_allclose(maps["stem"], stem, atol=1e-4)
    padded = np.pad(stem, [(0, 0), (0, 0), (1, 1), (1, 1), (0, 0)], constant_values=-np.inf)
    Ho, Wo = (stem.shape[2] - 1) // 2 + 1, (stem.shape[3] - 1) // 2 + 1
    pool = np.full((*stem.shape[:2], Ho, Wo, stem.shape[-1]), -np.inf)
    for i in range(3):
        for j in range(3):
            pool = np.maximum(pool, padded[:, :, i : i + 2 * Ho : 2, j : j + 2 * Wo : 2])
    np.testing.assert_allclose(maps["pool"], pool, atol=1e-4)


def test_backbone_init_is_kaiming_normal_fan_out():
    block = BasicBlock(32, 64, 2, temporal=True, dtype=jnp.float32, param_dtype=jnp.float32, rngs=nnx.Rngs(5))
    kernel = np.asarray(block.conv1.kernel[...])  # (3, 3, 3, 32, 64)
    np.testing.assert_allclose(kernel.std(), np.sqrt(2.0 / (27 * 64)), rtol=0.03)
    assert abs(kernel.mean()) < 0.1 * kernel.std()
    # Untruncated: a normal sample of this size has values beyond 2 sigma (truncated_normal does not).
    assert np.abs(kernel).max() > 3 * kernel.std()


def test_reference_head_count_shape_and_size_limit():
    head = abstract(lambda r: VisualHead(256, 128, 128, pooling="reference", rngs=r))
    assert n_params(head) == 557_568
    for px, side in [(256, 8), (224, 7)]:
        out = shapes_of(head, lambda m, x: m(x, train=False), jax.ShapeDtypeStruct((3, 2, side, side, 256), jnp.float32))
        assert out.shape == (3, 128) and out.dtype == jnp.float32, px
    with pytest.raises(ValueError, match=r"193-256 px.*pooling='global'"):
        head(jnp.zeros((1, 2, 4, 4, 256)), train=False)  # the map of a 128 px frame


def test_reference_head_matches_numpy():
    head = VisualHead(3, 4, 2, pooling="reference", rngs=nnx.Rngs(0))
    randomise_batch_norms(head, 6)
    x = np.random.default_rng(7).normal(size=(2, 2, 8, 8, 3)).astype(np.float32)
    y = np.asarray(head(jnp.asarray(x), train=False))
    g = lambda v: np.asarray(v[...], np.float64)
    h = np.maximum(np_bn_eval(np_conv3d(x, g(head.conv.kernel), (1, 2, 2), (0, 1, 1), g(head.conv.bias)), head.norm), 0)
    h = np_conv3d(h, g(head.out.kernel), (1, 1, 1), (0, 0, 0), g(head.out.bias))  # (2, 2, 1, 1, 2)
    np.testing.assert_allclose(y, h.mean(axis=(1, 2, 3)), atol=1e-4)


def test_global_head_on_64px_frames_matches_numpy():
    net = ResNet2d3d((4, 4, 8, 8), rngs=nnx.Rngs(0))
    head = VisualHead(8, 6, 5, pooling="global", rngs=nnx.Rngs(1))
    randomise_batch_norms(head, 8)
    frames = jnp.asarray(np.random.default_rng(9).normal(size=(2, 5, 64, 64, 3)), jnp.float32)
    maps = net(frames, train=False)
    assert maps.shape == (2, 2, 2, 2, 8)
    y = np.asarray(head(maps, train=False))
    g = lambda v: np.asarray(v[...], np.float64)
    m = np.asarray(maps, np.float64)
    h = np.maximum(np_bn_eval(np_conv3d(m, g(head.conv.kernel), (1, 2, 2), (0, 1, 1), g(head.conv.bias)), head.norm), 0)
    ref = h.mean(axis=(1, 2, 3)) @ g(head.out.kernel) + g(head.out.bias)
    np.testing.assert_allclose(y, ref, atol=1e-4)
    # Dropout is active in training and needs a stream.
    with pytest.raises(ValueError, match="rngs"):
        head(maps, train=True)
    assert not np.allclose(head(maps, train=True, rngs=nnx.Rngs(dropout=0)), y)


def test_head_init_is_pytorch_default():
    head = VisualHead(64, 32, 16, pooling="global", rngs=nnx.Rngs(2))
    kernel, bias = np.asarray(head.conv.kernel[...]), np.asarray(head.conv.bias[...])
    bound = 1.0 / np.sqrt(64 * 9)
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
    np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3), rtol=0.03)  # U(-b, b)
    assert np.abs(np.asarray(head.out.bias[...])).max() <= 1.0 / np.sqrt(32)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="pooling"):
        VisualHead(8, 8, 8, pooling="max", rngs=nnx.Rngs(0))
    net = abstract(lambda r: ResNet2d3d((4, 4, 8, 8), rngs=r))
    with pytest.raises(ValueError, match="height, width, 3"):
        net(jnp.zeros((1, 5, 32, 32)), train=False)
