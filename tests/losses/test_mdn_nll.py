"""MDN losses against scipy / numpy references, closed forms and the reference formula (docs/decisions.md#mdn-reference-likelihood)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import special, stats

from macl_jax.losses import mdn_nll

LAYOUTS = {139: mdn_nll.GROUPS_TT, 136: mdn_nll.GROUPS_A}


def _random_mixture(rng, frames, m, d, covariance, groups):
    mu = rng.normal(size=(*frames, m, d)).astype(np.float32)
    logits = rng.normal(scale=1.5, size=(*frames, m)).astype(np.float32)
    # Targets near component 0 so that the likelihoods are not all astronomically small.
    y = (mu[..., 0, :] + rng.normal(scale=0.8, size=(*frames, d))).astype(np.float32)
    width = len(groups) if covariance == "isotropic" else d
    sigma = rng.uniform(0.4, 1.8, size=(*frames, m, width)).astype(np.float32)
    return mu, logits, sigma, y


def _np_per_dim_sigma(sigma_m, groups, covariance):
    if covariance == "diagonal":
        return np.asarray(sigma_m, np.float64)
    return np.concatenate([np.full(stop - start, sigma_m[g], np.float64) for g, (_, start, stop) in enumerate(groups)])


def _scipy_nll(mu, logits, sigma, y, groups, covariance):
    """Per-frame NLL, one frame and one component at a time with scipy."""
    frames = logits.shape[:-1]
    out = np.zeros(frames)
    for idx in np.ndindex(*frames):
        log_alpha = special.log_softmax(logits[idx].astype(np.float64))
        terms = []
        for m in range(len(log_alpha)):
            var = _np_per_dim_sigma(sigma[idx][m], groups, covariance) ** 2
            terms.append(log_alpha[m] + stats.multivariate_normal.logpdf(y[idx], mean=mu[idx][m], cov=np.diag(var)))
        out[idx] = -special.logsumexp(terms)
    return out


@pytest.mark.parametrize("covariance", mdn_nll.COVARIANCES)
@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("d", [139, 136])
def test_mixture_nll_matches_scipy(d, m, covariance):
    groups = LAYOUTS[d]
    rng = np.random.default_rng(d * 10 + m)
    mu, logits, sigma, y = _random_mixture(rng, (2, 3), m, d, covariance, groups)
    ref = _scipy_nll(mu, logits, sigma, y, groups, covariance)
    per_frame = mdn_nll.mixture_nll_per_frame(mu, logits, sigma, y, groups, covariance=covariance)
    np.testing.assert_allclose(np.asarray(per_frame), ref, rtol=1e-4)
    loss = mdn_nll.mixture_nll(mu, logits, sigma, y, groups, covariance=covariance)
    np.testing.assert_allclose(float(loss), ref.mean(), rtol=1e-4)
    # Per-clip mask (2, 1) broadcast over the 3 frames of each clip, and a per-frame weight.
    mask = np.array([[0.0], [1.0]], np.float32)
    masked = mdn_nll.mixture_nll(mu, logits, sigma, y, groups, covariance=covariance, weights=mask)
    np.testing.assert_allclose(float(masked), ref[1].mean(), rtol=1e-4)
    w = rng.uniform(0.1, 2.0, size=(2, 3)).astype(np.float32)
    weighted = mdn_nll.mixture_nll(mu, logits, sigma, y, groups, covariance=covariance, weights=w)
    np.testing.assert_allclose(float(weighted), np.sum(w * ref) / np.sum(w), rtol=1e-4)


def test_mixture_nll_jits_with_static_layout():
    rng = np.random.default_rng(1)
    mu, logits, sigma, y = _random_mixture(rng, (4, 5), 3, 139, "isotropic", mdn_nll.GROUPS_TT)
    fn = jax.jit(mdn_nll.mixture_nll, static_argnames=("groups", "covariance"))
    eager = mdn_nll.mixture_nll(mu, logits, sigma, y, mdn_nll.GROUPS_TT)
    np.testing.assert_allclose(float(fn(mu, logits, sigma, y, mdn_nll.GROUPS_TT)), float(eager), rtol=1e-6)


def test_masked_frames_with_garbage_do_not_poison_the_mean():
    rng = np.random.default_rng(2)
    mu, logits, sigma, y = _random_mixture(rng, (2, 3), 3, 136, "isotropic", mdn_nll.GROUPS_A)
    bad = y.copy()
    bad[0] = np.inf
    w = np.array([[0.0], [1.0]], np.float32)
    ref = mdn_nll.mixture_nll(mu[1], logits[1], sigma[1], y[1], mdn_nll.GROUPS_A)
    got = mdn_nll.mixture_nll(mu, logits, sigma, bad, mdn_nll.GROUPS_A, weights=w)
    np.testing.assert_allclose(float(got), float(ref), rtol=1e-6)


def test_single_gaussian_at_mle_sigma_is_the_closed_form_and_stationary():
    rng = np.random.default_rng(3)
    d = 136
    y = rng.normal(size=(d,)).astype(np.float32)
    mu = (y + rng.normal(scale=0.3, size=(d,))).astype(np.float32)
    var = float(np.mean((y.astype(np.float64) - mu) ** 2))
    sigma_hat = np.float32(math.sqrt(var))

    def loss(s):
        return mdn_nll.mixture_nll(mu[None, None], jnp.zeros((1, 1)), s.reshape(1, 1, 1), y[None], mdn_nll.GROUPS_A)

    loss, grad = jax.jit(loss), jax.jit(jax.grad(loss))
    closed = d / 2 * (1 + math.log(2 * math.pi * var))
    np.testing.assert_allclose(float(loss(jnp.float32(sigma_hat))), closed, rtol=1e-5)
    grad_at_mle = float(grad(jnp.float32(sigma_hat)))
    scale = d / float(sigma_hat)  # each of the two terms of the derivative is about this size
    assert abs(grad_at_mle) < 1e-4 * scale
    # Away from the MLE the gradient is sizeable and points back toward it.
    assert float(grad(jnp.float32(1.5 * sigma_hat))) > 0.1 * scale
    assert float(grad(jnp.float32(0.7 * sigma_hat))) < -0.1 * scale


def test_per_group_mle_sigma_for_the_pose_layout():
    rng = np.random.default_rng(4)
    groups = mdn_nll.GROUPS_TT
    y = rng.normal(size=(139,)).astype(np.float32)
    mu = (y + rng.normal(scale=0.2, size=(139,)) * np.r_[np.ones(136), 5.0, 0.1, 0.1]).astype(np.float32)
    sq = (y.astype(np.float64) - mu) ** 2
    var = np.array([sq[a:b].mean() for _, a, b in groups])
    sigma = np.sqrt(var).astype(np.float32)

    def loss(s):
        return mdn_nll.mixture_nll(mu[None], jnp.zeros((1,)), s[None], y, groups)

    closed = sum((b - a) / 2 * (1 + math.log(2 * math.pi * v)) for (_, a, b), v in zip(groups, var))
    value, grad = jax.jit(jax.value_and_grad(loss))(jnp.asarray(sigma))
    np.testing.assert_allclose(float(value), closed, rtol=1e-5)
    grad = np.asarray(grad)
    sizes = np.array(mdn_nll.group_sizes(groups))
    assert np.all(np.abs(grad) < 1e-4 * sizes / sigma), grad


def _np_code_faithful(mu, logits, sigma_raw, y):
    """Literal float32 numpy transcription of the reference's mdn_loss_dense (docs/decisions.md#mdn-reference-likelihood)."""
    f32 = np.float32
    mu, logits, sigma_raw, y = (np.asarray(a, f32) for a in (mu, logits, sigma_raw, y))
    ex = np.exp(logits - logits.max(-1, keepdims=True))
    pi = np.clip(ex / ex.sum(-1, keepdims=True), f32(1e-4), f32(1 - 1e-4))
    elu = np.where(sigma_raw > 0, sigma_raw, np.expm1(np.minimum(sigma_raw, 0))).astype(f32)
    sigma = np.clip(elu + f32(1), f32(1e-4), f32(1e5))
    e = np.sum(f32(0.5) * ((y[..., None, :] - mu) * (f32(1) / sigma)[..., None]) ** 2, axis=-1)
    coef = -np.log(sigma) - np.log(f32(2) * f32(np.pi))
    exponent = np.log(pi) + coef - e
    x_max = exponent.max(-1, keepdims=True)
    loss = -(np.log(np.sum(np.exp(exponent - x_max), -1, keepdims=True)) + x_max)[..., 0]
    return np.sum(loss) / loss.size, loss


def test_code_faithful_nll_matches_the_spec_formula_with_clamps():
    rng = np.random.default_rng(5)
    b, t, m, d = 2, 4, 3, 139
    mu = rng.normal(size=(b, t, m, d)).astype(np.float32)
    y = (mu[..., 1, :] + rng.normal(scale=0.5, size=(b, t, d))).astype(np.float32)
    logits = rng.normal(size=(b, t, m)).astype(np.float32)
    logits[0, 0] = [30.0, 0.0, -30.0]  # alpha clamps at both ends
    sigma_raw = rng.normal(scale=2.0, size=(b, t, m)).astype(np.float32)
    sigma_raw[0, 1] = [-30.0, 3.0, 2e5]  # sigma clamps at 1e-4 and 1e5
    ref_mean, ref_frames = _np_code_faithful(mu, logits, sigma_raw, y)
    per_frame = mdn_nll.code_faithful_nll_per_frame(mu, logits, sigma_raw, y)
    np.testing.assert_allclose(np.asarray(per_frame), ref_frames, rtol=2e-6)
    np.testing.assert_allclose(float(mdn_nll.code_faithful_nll(mu, logits, sigma_raw, y)), ref_mean, rtol=2e-6)
    # (..., M, 1) raw sigmas are accepted too.
    np.testing.assert_allclose(
        float(mdn_nll.code_faithful_nll(mu, logits, sigma_raw[..., None], y)), ref_mean, rtol=2e-6
    )


def test_code_faithful_optimum_sigma_is_the_total_squared_error():
    rng = np.random.default_rng(6)
    d = 139
    y = rng.normal(size=(1, d)).astype(np.float32)
    mu = (y[:, None] + rng.normal(scale=0.5, size=(1, 1, d))).astype(np.float32)
    total = float(np.sum((y[0].astype(np.float64) - mu[0, 0]) ** 2))
    assert total > 4.0  # so the optimum sigma > 1 lies on the identity branch of ELU + 1

    def loss(s):
        return mdn_nll.code_faithful_nll(mu, jnp.zeros((1, 1)), s.reshape(1, 1), y)

    grad = jax.jit(jax.grad(loss))
    s_total = jnp.float32(math.sqrt(total) - 1.0)  # sigma = s + 1 = sqrt(total squared error)
    g_total = float(grad(s_total))
    assert abs(g_total) < 1e-4 / math.sqrt(total), g_total
    # At the exact per-dim MLE (sigma^2 = total / D) the reference's loss still pulls sigma up:
    # d loss / d sigma = 1 / sigma - total / sigma^3 = (1 - D) / sigma there.
    sigma_exact = math.sqrt(total / d)
    s_exact = sigma_exact - 1.0 if sigma_exact >= 1.0 else math.log(sigma_exact)  # inverse of ELU + 1
    dsigma_ds = 1.0 if sigma_exact >= 1.0 else sigma_exact
    np.testing.assert_allclose(
        float(grad(jnp.float32(s_exact))), (1 - d) / sigma_exact * dsigma_ds, rtol=1e-4
    )


def test_dirichlet_prior_matches_numpy():
    rng = np.random.default_rng(7)
    logits = rng.normal(scale=3.0, size=(2, 5, 3)).astype(np.float32)
    logits[0, 0] = [40.0, -40.0, 0.0]
    x = logits.astype(np.float64)
    soft = np.exp(x - x.max(-1, keepdims=True))
    soft /= soft.sum(-1, keepdims=True)
    for concentration in (2.0, 3.5):
        exact = -np.mean(np.sum((concentration - 1) * np.log(soft), -1))
        clamped = -np.mean(np.sum((concentration - 1) * np.log(np.clip(soft, 1e-4, 1 - 1e-4)), -1))
        np.testing.assert_allclose(float(mdn_nll.dirichlet_prior(logits, concentration)), exact, rtol=1e-5)
        np.testing.assert_allclose(
            float(mdn_nll.dirichlet_prior(logits, concentration, code_faithful=True)), clamped, rtol=1e-5
        )


def test_lip_weighted_l1_matches_a_loop():
    rng = np.random.default_rng(8)
    target = rng.normal(size=(2, 3, 136)).astype(np.float32)
    pred = rng.normal(size=(2, 3, 136)).astype(np.float32)
    total = 0.0
    for b in range(2):
        for t in range(3):
            gap = abs(float(target[b, t, 2 * 66 + 1]) - float(target[b, t, 2 * 62 + 1]))
            for k in range(68):
                for c in range(2):
                    j = 2 * k + c
                    w = 5.0 / (4.0 * gap + 0.1) if 48 <= k <= 67 else 1.0
                    total += w * abs(float(pred[b, t, j]) - float(target[b, t, j]))
    np.testing.assert_allclose(float(mdn_nll.lip_weighted_l1(pred, target)), total / (2 * 3 * 136), rtol=1e-5)
    with pytest.raises(ValueError, match="136"):
        mdn_nll.lip_weighted_l1(np.zeros((3, 139)), np.zeros((3, 139)))


def test_parameter_l2_matches_numpy_on_an_nnx_state():
    layer = nnx.Linear(7, 3, rngs=nnx.Rngs(0))
    layer.bias.value = jnp.arange(3, dtype=jnp.float32)
    state = nnx.state(layer, nnx.Param)
    flat = np.concatenate([np.asarray(layer.kernel.value).ravel(), np.arange(3.0)])
    np.testing.assert_allclose(float(mdn_nll.parameter_l2(state)), np.linalg.norm(flat), rtol=1e-6)
    zeros = {"w": jnp.zeros((4, 2)), "b": jnp.zeros(2)}
    grad = jax.grad(mdn_nll.parameter_l2)(zeros)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grad))


def test_inference_helpers_match_numpy():
    rng = np.random.default_rng(9)
    mu = rng.normal(size=(2, 4, 3, 139)).astype(np.float32)
    logits = rng.normal(size=(2, 4, 3)).astype(np.float32)
    best = np.take_along_axis(mu, logits.argmax(-1)[..., None, None], axis=-2)[..., 0, :]
    np.testing.assert_array_equal(np.asarray(mdn_nll.best_component(mu, logits)), best)
    alpha = special.softmax(logits.astype(np.float64), axis=-1)
    mean = np.einsum("btm,btmd->btd", alpha, mu)
    np.testing.assert_allclose(np.asarray(mdn_nll.mixture_mean(mu, logits)), mean, rtol=1e-5, atol=1e-6)


def test_sample_mixture_picks_components_with_alpha_frequencies():
    m, d = 3, 139
    centres = np.stack([np.full(d, 10.0 * k, np.float32) for k in range(m)])  # far apart
    logits = np.array([0.5, -0.3, 1.0], np.float32)
    sigma = np.full((m, len(mdn_nll.GROUPS_TT)), 1e-4, np.float32)
    n = 3000
    keys = jax.random.split(jax.random.key(0), n)
    draw = jax.jit(jax.vmap(functools.partial(mdn_nll.sample_mixture, groups=mdn_nll.GROUPS_TT), (0, None, None, None)))
    samples = np.asarray(draw(keys, centres, logits, sigma))
    nearest = np.argmin(np.abs(samples[:, None, :] - centres[None]).max(-1), axis=1)
    np.testing.assert_allclose(samples, centres[nearest], atol=1e-2)
    counts = np.bincount(nearest, minlength=m)
    expected = n * special.softmax(logits.astype(np.float64))
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert chi2 < stats.chi2.ppf(0.999, df=m - 1), (counts, expected)


def test_sample_mixture_spread_matches_diagonal_sigma():
    rng = np.random.default_rng(10)
    d = 136
    mu = rng.normal(size=(4000, 1, d)).astype(np.float32)
    sigma_d = rng.uniform(0.5, 2.0, size=(d,)).astype(np.float32)
    sigma = np.broadcast_to(sigma_d, (4000, 1, d))
    logits = np.zeros((4000, 1), np.float32)
    draws = np.asarray(mdn_nll.sample_mixture(jax.random.key(1), mu, logits, sigma, mdn_nll.GROUPS_A, "diagonal"))
    std = (draws - mu[:, 0]).std(axis=0)
    # Standard error of a std over 4000 draws is about 1.1 %; 6 % leaves room across 136 dims.
    np.testing.assert_allclose(std, sigma_d, rtol=0.06)


def test_gradients_stay_finite_at_extremes():
    rng = np.random.default_rng(11)
    b, m, d = 4, 3, 139
    mu = rng.normal(scale=3.0, size=(b, m, d)).astype(np.float32)
    y = rng.normal(size=(b, d)).astype(np.float32)
    logits = np.tile(np.array([50.0, -50.0, 0.0], np.float32), (b, 1))
    raw = np.tile(np.array([[-1e3], [0.0], [1e6]], np.float32), (b, 1, 3))  # sigma at 1e-4, 1, 1e5

    def exact(mu, logits, raw, kind):
        sigma = mdn_nll.sigma_from_raw(raw, kind)
        return mdn_nll.mixture_nll(mu, logits, sigma, y, mdn_nll.GROUPS_TT) + mdn_nll.dirichlet_prior(logits)

    def faithful(mu, logits, raw):
        prior = mdn_nll.dirichlet_prior(logits, code_faithful=True)
        return mdn_nll.code_faithful_nll(mu, logits, raw[..., 0], y) + prior

    for kind in ("elu", "exp"):
        sigma = np.asarray(mdn_nll.sigma_from_raw(raw, kind))
        np.testing.assert_allclose(sigma[0, :, 0], [1e-4, 1.0, 1e5], rtol=1e-3)
        value, grads = jax.jit(jax.value_and_grad(exact, argnums=(0, 1, 2)), static_argnums=3)(mu, logits, raw, kind)
        assert np.isfinite(float(value))
        assert all(np.all(np.isfinite(np.asarray(g))) for g in grads), kind
    value, grads = jax.jit(jax.value_and_grad(faithful, argnums=(0, 1, 2)))(mu, logits, raw)
    assert np.isfinite(float(value))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)


def test_sigma_from_raw_matches_numpy():
    raw = np.array([-20.0, -1.0, -0.1, 0.0, 0.5, 3.0, 20.0, 2e5], np.float32)
    elu = np.where(raw > 0, raw, np.expm1(np.minimum(raw, 0.0)))
    np.testing.assert_allclose(np.asarray(mdn_nll.sigma_from_raw(raw)), np.clip(elu + 1, 1e-4, 1e5), rtol=1e-5)
    exp = np.exp(np.minimum(raw.astype(np.float64), 50.0))
    np.testing.assert_allclose(np.asarray(mdn_nll.sigma_from_raw(raw, "exp")), np.clip(exp, 1e-4, 1e5), rtol=1e-5)
    with pytest.raises(ValueError, match="kind"):
        mdn_nll.sigma_from_raw(raw, "softplus")


def test_mdn_target_layout():
    rng = np.random.default_rng(12)
    aligned = rng.normal(size=(2, 5, 68, 2)).astype(np.float32)
    angle = rng.normal(size=(2, 5)).astype(np.float32)
    trans = rng.normal(size=(2, 5, 2)).astype(np.float32)
    ref = np.concatenate([aligned.reshape(2, 5, 136), angle[..., None], trans], -1)
    np.testing.assert_array_equal(np.asarray(mdn_nll.mdn_target(aligned, angle, trans)), ref)


def test_bad_shapes_get_clear_errors():
    mu = np.zeros((2, 3, 139), np.float32)
    logits = np.zeros((2, 3), np.float32)
    y = np.zeros((2, 139), np.float32)
    with pytest.raises(ValueError, match="GROUPS_TT"):
        mdn_nll.mixture_nll(mu, logits, np.ones((2, 3, 1)), y, mdn_nll.GROUPS_A)
    with pytest.raises(ValueError, match="isotropic covariance needs"):
        mdn_nll.mixture_nll(mu, logits, np.ones((2, 3, 1)), y, mdn_nll.GROUPS_TT)
    with pytest.raises(ValueError, match="diagonal covariance needs"):
        mdn_nll.mixture_nll(mu, logits, np.ones((2, 3, 3)), y, mdn_nll.GROUPS_TT, covariance="diagonal")
    with pytest.raises(ValueError, match="logits"):
        mdn_nll.mixture_nll(mu, np.zeros((2, 4)), np.ones((2, 3, 3)), y, mdn_nll.GROUPS_TT)
    with pytest.raises(ValueError, match="contiguously"):
        mdn_nll.check_groups((("a", 0, 100), ("b", 101, 139)), 139)
    with pytest.raises(ValueError, match="weights"):
        mdn_nll.mixture_nll(mu, logits, np.ones((2, 3, 3)), y, mdn_nll.GROUPS_TT, weights=np.ones(5))
