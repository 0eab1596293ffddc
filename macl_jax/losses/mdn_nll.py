"""Mixture-density losses and inference helpers of the MACL landmark MDN (MACL paper Sec. 2.2;
docs/decisions.md#mdn-reference-likelihood).

Per frame the MDN predicts M Gaussian components over a target y (..., D):

* talking-head variant f_tt: D = 139 = [136 aligned landmark coords (x0, y0, x1, y1, ...) | angle theta |
  offset t_x, t_y], laid out by `GROUPS_TT`;
* direct-regression variant f_a: D = 136 landmark coords only, `GROUPS_A`.

Model outputs: means mu (..., M, D), mixing logits (..., M) and sigmas made positive by
`sigma_from_raw`. Two likelihoods (docs/decisions.md#d3-mdn-likelihood):

* `mixture_nll`: the exact -log sum_m alpha_m N(y; mu_m, Sigma_m), with either one sigma per component
  and per group (isotropic within the landmarks, the angle and the offset, which have different
  units) or one sigma per dim (diagonal). The normaliser depends on D, so sigma^2 is estimated per
  dim.
* `code_faithful_nll`: the reference's formula (docs/decisions.md#mdn-reference-likelihood): one
  sigma for all D dims, a normaliser
  -log sigma - log 2 pi that does not grow with D (sigma ends up sqrt(D) too large) and a clamped,
  unrenormalised softmax.

Everything computes in float32 and is pure and jit-able; `groups` and `covariance` are static
(hashable tuples and strings), so pass them through `functools.partial` or `static_argnames`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

Group = tuple[str, int, int]  # (name, start, stop): the dims [start, stop) of the target
Groups = tuple[Group, ...]
Covariance = Literal["isotropic", "diagonal"]
COVARIANCES = ("isotropic", "diagonal")

GROUPS_TT: Groups = (("landmarks", 0, 136), ("angle", 136, 137), ("offset", 137, 139))
GROUPS_A: Groups = (("landmarks", 0, 136),)

# The reference's clamps (docs/decisions.md#mdn-reference-likelihood).
SIGMA_MIN = 1e-4
SIGMA_MAX = 1e5
ALPHA_MIN = 1e-4

LANDMARK_DIMS = 136
# Mouth points 48..67 occupy coords 96..135; the lip gap is |y66 - y62| (y of point k at 2k + 1).
MOUTH_START = 2 * 48
UPPER_LIP_Y = 2 * 62 + 1
LOWER_LIP_Y = 2 * 66 + 1

_LOG_2PI = math.log(2.0 * math.pi)
_WHERE = "macl_jax.losses.mdn_nll"


# ----------------------------------------------------------------------------- layout helpers


def check_groups(groups: Sequence[Sequence[Any]], dims: int | None = None, *, name: str = "groups") -> Groups:
    """Validates a group layout (contiguous, in order, starting at 0) and returns it as a tuple.

    `dims`, when given, must equal the last group's stop.
    """
    try:
        out = tuple((str(g), int(a), int(b)) for g, a, b in groups)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{_WHERE}: {name} must be a sequence of (name, start, stop) triples; got {groups!r}") from err
    if not out:
        raise ValueError(f"{_WHERE}: {name} is empty; use GROUPS_TT (D=139) or GROUPS_A (D=136)")
    position = 0
    for g, start, stop in out:
        if start != position or stop <= start:
            raise ValueError(
                f"{_WHERE}: {name} must cover the target dims contiguously from 0 with non-empty groups; "
                f"group {g!r} is [{start}, {stop}) after dim {position}: {out!r}"
            )
        position = stop
    if dims is not None and position != dims:
        raise ValueError(
            f"{_WHERE}: {name} cover {position} dims but the target has D={dims}; use GROUPS_TT for D=139 "
            f"(landmarks | angle | offset) or GROUPS_A for D=136"
        )
    return out


def group_sizes(groups: Groups) -> tuple[int, ...]:
    """Number of target dims per group."""
    return tuple(stop - start for _, start, stop in groups)


def mdn_target(aligned: jax.Array, angle: jax.Array, translation: jax.Array) -> jax.Array:
    """The f_tt target (..., 139) = [aligned landmarks (136) | theta | t_x, t_y].

    aligned: (..., 68, 2) or (..., 136); angle: (...) ; translation: (..., 2).
    """
    aligned = jnp.asarray(aligned, jnp.float32)
    if aligned.shape[-2:] == (68, 2):
        aligned = aligned.reshape(*aligned.shape[:-2], LANDMARK_DIMS)
    if aligned.shape[-1] != LANDMARK_DIMS:
        raise ValueError(f"{_WHERE}.mdn_target: aligned must be (..., 68, 2) or (..., 136); got {aligned.shape}")
    angle = jnp.asarray(angle, jnp.float32)[..., None]
    translation = jnp.asarray(translation, jnp.float32)
    if translation.shape[-1] != 2:
        raise ValueError(f"{_WHERE}.mdn_target: translation must be (..., 2); got {translation.shape}")
    return jnp.concatenate([aligned, angle, translation], axis=-1)


def expand_group_sigma(sigma: jax.Array, groups: Groups) -> jax.Array:
    """Per-group sigmas (..., G) -> per-dim sigmas (..., D), each repeated over its group's dims."""
    sizes = group_sizes(groups)
    if sigma.shape[-1] != len(sizes):
        raise ValueError(f"{_WHERE}: sigma has {sigma.shape[-1]} values per component but groups has {len(sizes)}")
    parts = [jnp.broadcast_to(sigma[..., g : g + 1], (*sigma.shape[:-1], n)) for g, n in enumerate(sizes)]
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)


def _check_mixture(
    fn: str, mu: jax.Array, logits: jax.Array | None = None, y: jax.Array | None = None
) -> tuple[int, int]:
    if mu.ndim < 2:
        raise ValueError(f"{_WHERE}.{fn}: mu must be (..., M, D); got shape {mu.shape}")
    m, d = mu.shape[-2:]
    if logits is not None and (logits.ndim < 1 or logits.shape[-1] != m):
        raise ValueError(f"{_WHERE}.{fn}: logits must be (..., M={m}) to match mu {mu.shape}; got {logits.shape}")
    if y is not None and y.shape[-1] != d:
        raise ValueError(f"{_WHERE}.{fn}: y must be (..., D={d}) to match mu {mu.shape}; got {y.shape}")
    return m, d


def _per_dim_sigma(fn: str, sigma: jax.Array, groups: Groups, covariance: str, m: int, d: int) -> jax.Array:
    """(..., M, G) isotropic or (..., M, D) diagonal sigmas -> (..., M, D), after shape checks."""
    if covariance not in COVARIANCES:
        raise ValueError(f"{_WHERE}.{fn}: covariance must be one of {COVARIANCES}; got {covariance!r}")
    want = len(groups) if covariance == "isotropic" else d
    if sigma.ndim < 2 or sigma.shape[-2] != m or sigma.shape[-1] != want:
        what = f"one sigma per component and group (..., M={m}, G={want})" if covariance == "isotropic" else (
            f"one sigma per component and dim (..., M={m}, D={d})"
        )
        raise ValueError(f"{_WHERE}.{fn}: {covariance} covariance needs {what}; got sigma {sigma.shape}")
    return expand_group_sigma(sigma, groups) if covariance == "isotropic" else sigma


def _weighted_mean(fn: str, values: jax.Array, weights: jax.Array | None) -> jax.Array:
    """Mean of per-frame values; with weights, sum(w v) / sum(w), masked frames contributing 0."""
    if weights is None:
        return jnp.mean(values)
    weights = jnp.asarray(weights, jnp.float32)
    try:
        np.broadcast_shapes(weights.shape, values.shape)
    except ValueError as err:
        raise ValueError(
            f"{_WHERE}.{fn}: weights {weights.shape} do not broadcast over the frames {values.shape}"
        ) from err
    weights = jnp.broadcast_to(weights, values.shape)
    # where, not a product: a masked (padded) frame's inf/nan must not reach the mean.
    total = jnp.sum(jnp.where(weights != 0, weights * values, 0.0))
    return total / jnp.maximum(jnp.sum(weights), jnp.finfo(jnp.float32).tiny)


# ----------------------------------------------------------------------------- sigmas


def sigma_from_raw(raw: jax.Array, kind: Literal["elu", "exp"] = "elu") -> jax.Array:
    """Positive sigmas from raw head outputs, clamped to [1e-4, 1e5].

    "elu": ELU(raw) + 1 (the reference's `--sigmaElu 1`); "exp": exp(raw).
    """
    raw = jnp.asarray(raw, jnp.float32)
    if kind == "elu":
        return jnp.clip(jax.nn.elu(raw) + 1.0, SIGMA_MIN, SIGMA_MAX)
    if kind == "exp":
        # Clamp before exp: exp(large) = inf would turn the zero gradient of the clamp into 0 * inf = nan.
        return jnp.exp(jnp.clip(raw, math.log(SIGMA_MIN), math.log(SIGMA_MAX)))
    raise ValueError(f"{_WHERE}.sigma_from_raw: kind must be 'elu' or 'exp'; got {kind!r}")


# ----------------------------------------------------------------------------- exact likelihood


def component_log_density(
    mu: jax.Array, sigma: jax.Array, y: jax.Array, groups: Groups, *, covariance: Covariance = "isotropic"
) -> jax.Array:
    """log N(y; mu_m, Sigma_m) for every component: (..., M).

    isotropic: sigma (..., M, G), one value per group; diagonal: sigma (..., M, D).
    """
    mu = jnp.asarray(mu, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    sigma = jnp.asarray(sigma, jnp.float32)
    m, d = _check_mixture("component_log_density", mu, None, y)
    groups = check_groups(groups, d)
    per_dim = _per_dim_sigma("component_log_density", sigma, groups, covariance, m, d)
    z = (y[..., None, :] - mu) / per_dim
    quadratic = 0.5 * jnp.sum(jnp.square(z), axis=-1)
    if covariance == "isotropic":
        # D_g log sigma_g from the G values, not a sum over D repeated logs (exact and cheaper).
        sizes = jnp.asarray(group_sizes(groups), jnp.float32)
        log_det = jnp.sum(sizes * jnp.log(sigma), axis=-1)
    else:
        log_det = jnp.sum(jnp.log(sigma), axis=-1)
    return -quadratic - log_det - 0.5 * d * _LOG_2PI


def mixture_nll_per_frame(
    mu: jax.Array, logits: jax.Array, sigma: jax.Array, y: jax.Array, groups: Groups, *, covariance: Covariance = "isotropic"
) -> jax.Array:
    """Exact -log sum_m softmax(logits)_m N(y; mu_m, Sigma_m) per frame: (...).

    mu (..., M, D), logits (..., M), y (..., D); sigma (..., M, G) isotropic per group or
    (..., M, D) diagonal. log alpha comes from log_softmax (no clamping), the sum from logsumexp.
    """
    logits = jnp.asarray(logits, jnp.float32)
    _check_mixture("mixture_nll", jnp.asarray(mu), logits, jnp.asarray(y))
    log_density = component_log_density(mu, sigma, y, groups, covariance=covariance)
    return -jax.nn.logsumexp(jax.nn.log_softmax(logits, axis=-1) + log_density, axis=-1)


def mixture_nll(
    mu: jax.Array, logits: jax.Array, sigma: jax.Array, y: jax.Array, groups: Groups, *,
    covariance: Covariance = "isotropic", weights: jax.Array | None = None,
) -> jax.Array:
    """Mean over frames (weighted by `weights`, broadcast over the frame axes) of `mixture_nll_per_frame`."""
    per_frame = mixture_nll_per_frame(mu, logits, sigma, y, groups, covariance=covariance)
    return _weighted_mean("mixture_nll", per_frame, weights)


# ----------------------------------------------------------------------------- the reference's loss


def clamped_alpha(logits: jax.Array) -> jax.Array:
    """The reference's mixing weights: clamp(softmax(logits), 1e-4, 1 - 1e-4), not renormalised."""
    return jnp.clip(jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1), ALPHA_MIN, 1.0 - ALPHA_MIN)


def code_faithful_nll_per_frame(mu: jax.Array, logits: jax.Array, sigma_raw: jax.Array, y: jax.Array) -> jax.Array:
    """The reference loss per frame (docs/decisions.md#mdn-reference-likelihood):
    -LSE_m[log alpha_m - log sigma_m - log 2 pi - ||y - mu_m||^2 / (2 sigma_m^2)].

    sigma_raw (..., M) (or (..., M, 1)) is the raw sigma-head output; sigma = clamp(ELU(s) + 1, 1e-4,
    1e5) is shared by all D dims. Operations follow the reference's order in float32
    (0.5 * ((y - mu) * (1 / sigma))^2 summed over D, max-subtracted log-sum-exp); XLA's reduction
    order may still differ from PyTorch's in the last bit.
    """
    mu = jnp.asarray(mu, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    logits = jnp.asarray(logits, jnp.float32)
    sigma_raw = jnp.asarray(sigma_raw, jnp.float32)
    m, _ = _check_mixture("code_faithful_nll", mu, logits, y)
    if sigma_raw.ndim == logits.ndim + 1 and sigma_raw.shape[-1] == 1:
        sigma_raw = sigma_raw[..., 0]
    if sigma_raw.shape[-1] != m:
        raise ValueError(
            f"{_WHERE}.code_faithful_nll: sigma_raw must be (..., M={m}), one raw sigma per component; "
            f"got {sigma_raw.shape}"
        )
    alpha = clamped_alpha(logits)
    sigma = jnp.clip(jax.nn.elu(sigma_raw) + 1.0, SIGMA_MIN, SIGMA_MAX)
    e = jnp.sum(0.5 * jnp.square((y[..., None, :] - mu) * jnp.reciprocal(sigma)[..., None]), axis=-1)
    coef = -jnp.log(sigma) - jnp.log(jnp.float32(2.0 * np.float32(np.pi)))
    exponent = jnp.log(alpha) + coef - e
    x_max = jax.lax.stop_gradient(jnp.max(exponent, axis=-1, keepdims=True))
    lse = jnp.log(jnp.sum(jnp.exp(exponent - x_max), axis=-1)) + x_max[..., 0]
    return -lse


def code_faithful_nll(
    mu: jax.Array, logits: jax.Array, sigma_raw: jax.Array, y: jax.Array, *, weights: jax.Array | None = None
) -> jax.Array:
    """The reference's L_nll (docs/decisions.md#mdn-reference-likelihood): mean over frames of `code_faithful_nll_per_frame`."""
    return _weighted_mean("code_faithful_nll", code_faithful_nll_per_frame(mu, logits, sigma_raw, y), weights)


# ----------------------------------------------------------------------------- regularisers and auxiliaries


def dirichlet_prior(
    logits: jax.Array,
    concentration: float | jax.Array = 2.0,
    code_faithful: bool = False,
    *,
    weights: jax.Array | None = None,
) -> jax.Array:
    """-mean_frames sum_m (c - 1) log alpha_m: a Dirichlet(c) prior on the mixing weights.

    With c > 1 it pushes toward even use of the components (the reference: c = 2, weight 0.005).
    alpha comes from log_softmax, or from the reference's clamped softmax when `code_faithful`.
    """
    logits = jnp.asarray(logits, jnp.float32)
    log_alpha = jnp.log(clamped_alpha(logits)) if code_faithful else jax.nn.log_softmax(logits, axis=-1)
    per_frame = -jnp.sum((jnp.asarray(concentration, jnp.float32) - 1.0) * log_alpha, axis=-1)
    return _weighted_mean("dirichlet_prior", per_frame, weights)


def lip_weights(target: jax.Array) -> jax.Array:
    """Per-dim weights (..., 136): 5 / (4 |y66 - y62| + 0.1) of the target on the mouth dims 96..135, 1 elsewhere."""
    target = jnp.asarray(target, jnp.float32)
    gap = jnp.abs(target[..., LOWER_LIP_Y] - target[..., UPPER_LIP_Y])
    w = 5.0 / (4.0 * gap + 0.1)
    ones = jnp.ones((*target.shape[:-1], MOUTH_START), jnp.float32)
    mouth = jnp.broadcast_to(w[..., None], (*target.shape[:-1], LANDMARK_DIMS - MOUTH_START))
    return jnp.concatenate([ones, mouth], axis=-1)


def lip_weighted_l1(pred: jax.Array, target: jax.Array, *, weights: jax.Array | None = None) -> jax.Array:
    """Mean |pred - target| over aligned landmark coords (..., 136), mouth dims weighted by `lip_weights`.

    The reference computes this weight inside its NLL and never applies it
    (docs/decisions.md#mdn-reference-likelihood); here it is an
    optional auxiliary term (docs/decisions.md#d4-lip-l1), e.g. on `best_component(...)[..., :136]`. A narrow lip gap
    gets a large weight (up to 50), so closed mouths are fitted tightly.
    """
    pred = jnp.asarray(pred, jnp.float32)
    target = jnp.asarray(target, jnp.float32)
    if pred.shape[-1] != LANDMARK_DIMS or target.shape[-1] != LANDMARK_DIMS:
        raise ValueError(
            f"{_WHERE}.lip_weighted_l1: pred and target must be aligned landmark coords (..., 136); got "
            f"{pred.shape}, {target.shape} (slice [..., :136] off a 139-d output)"
        )
    per_frame = jnp.mean(jnp.abs(pred - target) * lip_weights(target), axis=-1)
    return _weighted_mean("lip_weighted_l1", per_frame, weights)


def parameter_l2(tree: Any) -> jax.Array:
    """Plain (not squared) L2 norm of all floating leaves of a pytree, in float32.

    The reference adds 0.001 ||theta_alpha|| + 0.01 ||theta_sigma|| (weights and biases of the
    alpha and sigma heads). Non-floating leaves (counters, RNG keys) are skipped.
    """
    leaves = [
        jnp.asarray(leaf, jnp.float32)
        for leaf in jax.tree.leaves(tree)
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.inexact)
    ]
    if not leaves:
        return jnp.float32(0.0)
    squares = sum(jnp.sum(jnp.square(leaf)) for leaf in leaves)
    # sqrt has an infinite derivative at 0: an all-zero head (zero init) must still get a finite gradient.
    positive = squares > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squares, 1.0)), 0.0)


# ----------------------------------------------------------------------------- inference (docs/decisions.md#d9-inference-modes)


def _take_component(x: jax.Array, index: jax.Array) -> jax.Array:
    """x (..., M, K), index (...) -> x[..., index, :] (..., K)."""
    return jnp.take_along_axis(x, index[..., None, None], axis=-2)[..., 0, :]


def best_component(mu: jax.Array, logits: jax.Array) -> jax.Array:
    """mu of the component with the largest alpha (the paper's and reference's output): (..., D)."""
    mu = jnp.asarray(mu, jnp.float32)
    _check_mixture("best_component", mu, jnp.asarray(logits))
    return _take_component(mu, jnp.argmax(logits, axis=-1))


def mixture_mean(mu: jax.Array, logits: jax.Array) -> jax.Array:
    """sum_m alpha_m mu_m (..., D), the mixture's mean."""
    mu = jnp.asarray(mu, jnp.float32)
    _check_mixture("mixture_mean", mu, jnp.asarray(logits))
    alpha = jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1)
    # A broadcast product, not einsum: a matmul may run in reduced precision on accelerators.
    return jnp.sum(alpha[..., None] * mu, axis=-2)


def sample_mixture(
    key: jax.Array,
    mu: jax.Array,
    logits: jax.Array,
    sigma: jax.Array,
    groups: Groups,
    covariance: Covariance = "isotropic",
) -> jax.Array:
    """One draw per frame: m ~ Categorical(alpha), y ~ N(mu_m, diag(sigma_m^2)): (..., D).

    sigma as in `mixture_nll`. For the reference's single sigma, pass sigma[..., None] with one
    group spanning all D dims.
    """
    mu = jnp.asarray(mu, jnp.float32)
    logits = jnp.asarray(logits, jnp.float32)
    m, d = _check_mixture("sample_mixture", mu, logits)
    groups = check_groups(groups, d)
    per_dim = _per_dim_sigma("sample_mixture", jnp.asarray(sigma, jnp.float32), groups, covariance, m, d)
    per_dim = jnp.broadcast_to(per_dim, mu.shape)
    component_key, noise_key = jax.random.split(key)
    index = jax.random.categorical(component_key, logits, axis=-1)
    noise = jax.random.normal(noise_key, (*index.shape, d), jnp.float32)
    return _take_component(mu, index) + _take_component(per_dim, index) * noise
