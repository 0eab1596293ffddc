"""Rhythmic Head Motion losses against numpy statements of their formulas and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from macl_jax.losses.rhm import (
    RHM_VGG_LAYERS,
    RHM_VGG_WEIGHTS,
    background_masked,
    discriminator_loss,
    flow_loss,
    generator_adversarial_loss,
    multiscale_feature_matching,
    vgg_loss,
    warp_loss,
)

RNG = np.random.default_rng(0)


def _outputs(num_scales=2, layers=3, batch=2):
    """A MultiscalePatchGAN-shaped output: per scale (logits, [features])."""
    out = []
    for s in range(num_scales):
        side = 8 >> s
        logits = RNG.normal(size=(batch, side, side, 1)).astype(np.float32) * 2
        feats = [RNG.normal(size=(batch, side, side, 4 + l)).astype(np.float32) for l in range(layers)]
        out.append((logits, feats))
    return out


def _jnp(outputs):
    return [(jnp.asarray(l), [jnp.asarray(f) for f in fs]) for l, fs in outputs]


def test_adversarial_losses_average_scales_and_sum_variants():
    real, final, raw = _outputs(), _outputs(), _outputs()
    relu = lambda x: np.maximum(x, 0.0)
    want_g = sum(np.mean([-l.mean() for l, _ in v]) for v in (final, raw))
    got_g = generator_adversarial_loss([_jnp(final), _jnp(raw)])
    assert float(got_g) == pytest.approx(want_g, rel=1e-5)
    # The real term is counted once per fake variant.
    want_d = sum(
        np.mean([relu(1 - r).mean() + relu(1 + f).mean() for (r, _), (f, _) in zip(real, v)]) for v in (final, raw)
    )
    assert float(discriminator_loss(_jnp(real), [_jnp(final), _jnp(raw)])) == pytest.approx(want_d, rel=1e-5)
    with pytest.raises(ValueError, match="scales"):
        discriminator_loss(_jnp(real), [_jnp(_outputs(num_scales=1))])


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_feature_matching_weights_scales_by_one_over_num_d(reduction):
    real, final, raw = _outputs(num_scales=3), _outputs(num_scales=3), _outputs(num_scales=3)
    reduce = np.sum if reduction == "sum" else np.mean
    want = sum(
        sum(reduce([np.abs(f - r).mean() for f, r in zip(ff, rf)]) / 3 for (_, rf), (_, ff) in zip(real, v))
        for v in (final, raw)
    )
    got = multiscale_feature_matching(_jnp(real), [_jnp(final), _jnp(raw)], layer_reduction=reduction)
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_feature_matching_holds_the_real_features_constant():
    real, fake = _jnp(_outputs()), _jnp(_outputs())

    def loss(real_feats, fake_feats):
        r = [(l, f) for (l, _), f in zip(real, real_feats)]
        g = [(l, f) for (l, _), f in zip(fake, fake_feats)]
        return multiscale_feature_matching(r, [g])

    g_real, g_fake = jax.grad(loss, argnums=(0, 1))([f for _, f in real], [f for _, f in fake])
    assert all(float(jnp.abs(x).max()) == 0.0 for fs in g_real for x in fs)
    assert any(float(jnp.abs(x).max()) > 0.0 for fs in g_fake for x in fs)


def _toy_features(images, layers):
    """Deterministic stand-in for VGG: layer i is the image average-pooled 2^i, raised to the power i + 1."""
    out = {}
    for i, name in enumerate(layers):
        b, h, w, c = images.shape
        k = 2**i
        pooled = images.reshape(b, h // k, k, w // k, k, c).mean(axis=(2, 4))
        out[name] = pooled ** (i + 1)
    return out


def test_vgg_loss_weights_layers_and_rescales_to_unit_range():
    calls = []

    def features(images, layers):
        calls.append(images.shape[0])
        assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0  # [-1, 1] -> [0, 1]
        return _toy_features(images, layers)

    real = RNG.uniform(-1, 1, size=(2, 16, 16, 3)).astype(np.float32)
    fakes = [RNG.uniform(-1, 1, size=real.shape).astype(np.float32) for _ in range(2)]
    got = vgg_loss(features, [jnp.asarray(f) for f in fakes], jnp.asarray(real))
    want = 0.0
    for fake in fakes:
        ff, rf = _toy_features((fake + 1) / 2, RHM_VGG_LAYERS), _toy_features((real + 1) / 2, RHM_VGG_LAYERS)
        want += sum(w * np.abs(ff[n] - rf[n]).mean() for n, w in zip(RHM_VGG_LAYERS, RHM_VGG_WEIGHTS))
    assert float(got) == pytest.approx(want, rel=1e-5)
    assert calls == [6]  # both fakes and the real image in one call
    assert RHM_VGG_WEIGHTS == (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


def test_warp_loss_with_constant_flows_is_a_shifted_l1():
    src = RNG.normal(size=(2, 5, 6, 3)).astype(np.float32)
    tgt = RNG.normal(size=src.shape).astype(np.float32)
    flow = np.zeros((2, 5, 6, 2), np.float32)
    flow[..., 0] = 1.0  # each output pixel reads the source one column to the right (border-clamped)
    shifted = np.concatenate([src[:, :, 1:], src[:, :, -1:]], axis=2)
    assert float(warp_loss(jnp.asarray(src), jnp.asarray(flow), jnp.asarray(tgt))) == pytest.approx(
        np.abs(shifted - tgt).mean(), rel=1e-5
    )
    flow[..., 0], flow[..., 1] = 0.0, 0.5  # half a row down: the mean of two rows
    halfway = 0.5 * (src + np.concatenate([src[:, 1:], src[:, -1:]], axis=1))
    assert float(warp_loss(jnp.asarray(src), jnp.asarray(flow), jnp.asarray(tgt))) == pytest.approx(
        np.abs(halfway - tgt).mean(), rel=1e-5
    )


def test_flow_loss_masks_by_confidence_and_trains_only_the_prediction():
    flow = RNG.normal(size=(2, 4, 5, 2)).astype(np.float32) * 3
    gt = RNG.normal(size=flow.shape).astype(np.float32) * 3
    conf = (RNG.uniform(size=(2, 4, 5)) > 0.4).astype(np.float32)
    want = np.abs((flow - gt) * conf[..., None]).mean()
    for c in (conf, conf[..., None]):
        assert float(flow_loss(jnp.asarray(flow), jnp.asarray(gt), jnp.asarray(c))) == pytest.approx(want, rel=1e-5)
    g_flow, g_gt = jax.grad(lambda f, g: flow_loss(f, g, jnp.asarray(conf)), argnums=(0, 1))(jnp.asarray(flow), jnp.asarray(gt))
    assert float(jnp.abs(g_gt).max()) == 0.0
    np.testing.assert_allclose(np.asarray(g_flow), np.sign(flow - gt) * conf[..., None] / flow.size, atol=1e-7)
    with pytest.raises(ValueError, match="confidence"):
        flow_loss(jnp.asarray(flow), jnp.asarray(gt), jnp.zeros((2, 4, 4)))


def test_background_masked_fills_uncovered_pixels_with_black():
    image = RNG.uniform(-1, 1, size=(1, 3, 3, 3)).astype(np.float32)
    cover = np.zeros((1, 3, 3, 1), np.float32)
    cover[0, 1, 1] = 1.0
    got = np.asarray(background_masked(jnp.asarray(image), jnp.asarray(cover)))
    want = np.full_like(image, -1.0)
    want[0, 1, 1] = image[0, 1, 1]
    np.testing.assert_array_equal(got, want)
