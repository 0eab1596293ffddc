"""The Rhythmic Head Motion generator: the per-sample generated convs against lax, SPADE against a
numpy formula, output shapes/ranges for K=2, K=1 and the ablations, attention normalised over K,
the output responding to the target map and the references, a few Adam steps lowering an L1
loss, and the parameter count of the full preset."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from macl_jax.models.rhm import RHMGenerator, RHMSizes, count_params
from macl_jax.models.rhm.layers import (
    Affine1x1, ConvTranspose3x3s2, SPADE, SPADEAffine, conv1x1_per_sample, conv_transpose1x1_s2_per_sample,
)

# The tiny models run in milliseconds; LLVM's optimisation passes would cost most of the test time.
FAST = {"xla_backend_optimization_level": 0}


def _compile(fn, *args):
    return jax.jit(fn).lower(*args).compile(compiler_options=FAST)


def _model(sizes: RHMSizes, dtype=jnp.float32) -> RHMGenerator:
    # An rbg key: the same initialisers, but its random-bit ops compile far faster on CPU than threefry's.
    return RHMGenerator(sizes, dtype=dtype, rngs=nnx.Rngs(jax.random.key(0, impl="rbg")))


def _inputs(sizes: RHMSizes, b: int, seed: int) -> dict[str, jax.Array]:
    k, h = sizes.num_refs, sizes.image_size
    ks = jax.random.split(jax.random.key(seed), 7)
    return {
        "target_map": jax.random.uniform(ks[0], (b, h, h, 1)),
        "ref_images": jax.random.uniform(ks[1], (b, k, h, h, 3), minval=-1, maxval=1),
        "ref_maps": jax.random.uniform(ks[2], (b, k, h, h, 1)),
        "warp_image": jax.random.uniform(ks[3], (b, h, h, 3), minval=-1, maxval=1),
        "warp_map": jax.random.uniform(ks[4], (b, h, h, 1)),
        "ani_image": jax.random.uniform(ks[5], (b, h, h, 3), minval=-1, maxval=1),
        "ani_map": jax.random.uniform(ks[6], (b, h, h, 1)),
    }


def _forward(model: RHMGenerator, inputs: dict) -> dict:
    graphdef, state = nnx.split(model)
    return _compile(lambda st, x: nnx.merge(graphdef, st, copy=True)(**x), state, inputs)(state, inputs)


def _check_outputs(out: dict, sizes: RHMSizes, b: int) -> None:
    h, k = sizes.image_size, sizes.num_refs
    for name in ("image", "raw_image"):
        assert out[name].shape == (b, h, h, 3) and out[name].dtype == jnp.float32
        assert np.all(np.abs(np.asarray(out[name])) <= 1.0)
    for name, on in (("ref", sizes.warp_ref), ("ani", sizes.warp_ani)):
        if not on:
            assert out[f"flow_{name}"] is None and out[f"weight_{name}"] is None and out[f"warped_{name}"] is None
            continue
        assert out[f"flow_{name}"].shape == (b, h, h, 2) and np.all(np.isfinite(out[f"flow_{name}"]))
        weight = np.asarray(out[f"weight_{name}"])
        assert weight.shape == (b, h, h, 1) and np.all((weight > 0) & (weight < 1))
        assert out[f"warped_{name}"].shape == (b, h, h, 3)
    a = h // 2**sizes.n_downsample_fusion
    assert out["attention"].shape == (b, k, a, a)
    np.testing.assert_allclose(np.asarray(out["attention"]).sum(axis=1), 1.0, rtol=1e-5)
    assert out["ref_idx"].shape == (b,) and np.all((np.asarray(out["ref_idx"]) >= 0) & (np.asarray(out["ref_idx"]) < k))


def test_generated_1x1_convs_match_lax_sample_by_sample():
    ks = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(ks[0], (3, 5, 4, 6))
    p = Affine1x1(jax.random.normal(ks[1], (3, 6, 7)), jax.random.normal(ks[2], (3, 7)))
    dn = ("NHWC", "HWIO", "NHWC")

    def both(x, p):  # one compiled program instead of a dispatch (and compile) per op
        by_sample = [
            (jax.lax.conv_general_dilated(x[i:i + 1], p.w[i][None, None], (1, 1), "VALID", dimension_numbers=dn) + p.b[i],
             # output_padding 1 = one extra row and column at the end.
             jax.lax.conv_transpose(x[i:i + 1], p.w[i][None, None], (2, 2), ((0, 1), (0, 1)), dimension_numbers=dn)
             + p.b[i])
            for i in range(3)
        ]
        conv_want, up_want = (jnp.concatenate(z) for z in zip(*by_sample))
        return conv1x1_per_sample(x, p), conv_want, conv_transpose1x1_s2_per_sample(x, p), up_want

    conv, conv_want, up, up_want = _compile(both, x, p)(x, p)
    assert up.shape == (3, 10, 8, 7)
    np.testing.assert_allclose(conv, conv_want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(up, up_want, rtol=1e-5, atol=1e-5)


def test_learned_transposed_conv_is_pytorchs_with_a_flipped_kernel():
    layer = ConvTranspose3x3s2(2, 3, dtype=jnp.float32, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    w_torch = rng.normal(size=(3, 3, 2, 3)).astype(np.float32)  # (kh, kw, in, out): PyTorch's taps, HWIO order
    layer.kernel[...] = jnp.asarray(w_torch[::-1, ::-1])
    x = rng.normal(size=(1, 4, 5, 2)).astype(np.float32)
    # ConvTranspose2d(k=3, s=2, p=1, output_padding=1) written as a scatter: input (i, j) adds
    # x @ W[a, c] at (2i + a, 2j + c); crop `p` at the start and p - output_padding = 0 at the end.
    full = np.zeros((1, 2 * 4 + 1, 2 * 5 + 1, 3), np.float32)
    for i in range(4):
        for j in range(5):
            for a in range(3):
                for c in range(3):
                    full[0, 2 * i + a, 2 * j + c] += x[0, i, j] @ w_torch[a, c]
    np.testing.assert_allclose(layer(jnp.asarray(x)), full[:, 1:9, 1:11], rtol=1e-5, atol=1e-5)


def test_spade_is_batch_norm_then_each_branch_modulation_in_turn():
    norm = SPADE(3, [2, 4], generated_first=True, dtype=jnp.float32, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    for conv in (norm.gamma[1], norm.beta[1]):  # learned branch 1: replace the near-zero init
        conv.kernel[...] = jnp.asarray(rng.normal(size=conv.kernel.shape).astype(np.float32))
        conv.bias[...] = jnp.asarray(rng.normal(size=conv.bias.shape).astype(np.float32))
    x = rng.normal(2.0, 3.0, size=(4, 5, 5, 3)).astype(np.float32)
    m0 = rng.normal(size=(4, 5, 5, 2)).astype(np.float32)
    m1 = rng.normal(size=(4, 5, 5, 4)).astype(np.float32)
    gw, gb, bw, bb = (rng.normal(size=s).astype(np.float32) for s in ((4, 2, 3), (4, 3), (4, 2, 3), (4, 3)))
    generated = SPADEAffine(Affine1x1(jnp.asarray(gw), jnp.asarray(gb)), Affine1x1(jnp.asarray(bw), jnp.asarray(bb)))

    out = norm(jnp.asarray(x), [jnp.asarray(m0), jnp.asarray(m1)], generated)

    n = (x - x.mean(axis=(0, 1, 2))) / np.sqrt(x.var(axis=(0, 1, 2)) + 1e-5)
    gamma0 = np.einsum("bhwc,bco->bhwo", m0, gw) + gb[:, None, None]
    beta0 = np.einsum("bhwc,bco->bhwo", m0, bw) + bb[:, None, None]
    n = n * (1 + gamma0) + beta0
    k1g, k1b = np.asarray(norm.gamma[1].kernel[...])[0, 0], np.asarray(norm.beta[1].kernel[...])[0, 0]
    gamma1 = m1 @ k1g + np.asarray(norm.gamma[1].bias[...])
    beta1 = m1 @ k1b + np.asarray(norm.beta[1].bias[...])
    np.testing.assert_allclose(out, n * (1 + gamma1) + beta1, rtol=1e-4, atol=1e-4)
    # Branch 0 takes generated weights only: it owns no gamma/beta convs.
    assert norm.gamma[0] is None and norm.beta[0] is None


@pytest.fixture(scope="module")
def tiny_k2():
    """The tiny K=2 generator with everything on, and one compiled Adam step on L1(image) + L1(raw)."""
    sizes = RHMSizes.tiny()
    model = _model(sizes)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(2e-3)
    inputs = _inputs(sizes, 2, seed=1)
    # A flat colour: reachable in a few steps (the head's bias and kernel), unlike per-pixel noise.
    target = jnp.broadcast_to(jnp.asarray([0.6, -0.4, 0.2]), inputs["warp_image"].shape)

    def step(params, rest, opt_state, inputs, target):
        def loss_fn(p, r):  # fresh Variables in this trace (copy=True), so batch and spectral norm may update them
            m = nnx.merge(graphdef, p, r, copy=True)
            out = m(**inputs)
            loss = jnp.mean(jnp.abs(out["image"] - target)) + jnp.mean(jnp.abs(out["raw_image"] - target))
            return loss, (out, nnx.split(m, nnx.Param, ...)[2])

        (loss, (out, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state, loss, out

    opt_state = tx.init(params)
    compiled = _compile(step, params, rest, opt_state, inputs, target)
    return types.SimpleNamespace(sizes=sizes, model=model, params=params, rest=rest, opt_state=opt_state,
                                 inputs=inputs, target=target, step=compiled)


def test_k2_outputs_shapes_ranges_and_attention(tiny_k2):
    t = tiny_k2
    out = t.step(t.params, t.rest, t.opt_state, t.inputs, t.target)[4]
    _check_outputs(out, t.sizes, 2)
    # The hybrid fusion's self-aggregation reads the K streams stacked on channels: K * c wide.
    c = t.sizes.channels[t.sizes.n_downsample_fusion]
    assert t.model.encoder.self_image.conv.kernel.shape == (3, 3, 2 * c, c)


def test_init_is_xavier_normal_gain_002_with_zero_biases(tiny_k2):
    m = tiny_k2.model
    kernel = np.asarray(m.label_embedder.down[-1].kernel[...])  # (3, 3, 32, 64)
    fan_in, fan_out = 9 * kernel.shape[2], 9 * kernel.shape[3]
    np.testing.assert_allclose(kernel.std(), 0.02 * np.sqrt(2.0 / (fan_in + fan_out)), rtol=0.1)
    assert not np.any(np.asarray(m.label_embedder.down[-1].bias[...]))
    scale = np.asarray(m.encoder.image_in.norm.scale[...])
    assert abs(scale.mean() - 1) < 0.02 and 0.005 < scale.std() < 0.05


def test_output_depends_on_target_map_and_references(tiny_k2):
    t = tiny_k2

    def run(**changes):
        return t.step(t.params, t.rest, t.opt_state, {**t.inputs, **changes}, t.target)[4]

    base = run()
    key = jax.random.key(9)
    moved = {
        "target_map": jnp.roll(t.inputs["target_map"], 3, axis=2),
        "ref_images": -t.inputs["ref_images"],
        "ref_maps": jax.random.uniform(key, t.inputs["ref_maps"].shape),
    }
    for name, value in moved.items():
        out = run(**{name: value})
        diff = float(jnp.max(jnp.abs(out["image"] - base["image"])))
        assert diff > 1e-4, f"image does not respond to {name} (max change {diff})"
    # The attention is a function of the landmark maps alone.
    np.testing.assert_array_equal(run(ref_images=moved["ref_images"])["attention"], base["attention"])
    assert float(jnp.max(jnp.abs(run(ref_maps=moved["ref_maps"])["attention"] - base["attention"]))) > 1e-3


def test_adam_steps_reduce_the_l1_loss(tiny_k2):
    t = tiny_k2
    params, rest, opt_state = t.params, t.rest, t.opt_state
    losses = []
    for _ in range(6):
        params, rest, opt_state, loss, _ = t.step(params, rest, opt_state, t.inputs, t.target)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses


def test_one_reference_without_ani_in_eval_mode():
    sizes = RHMSizes.tiny(num_refs=1, warp_ani=False)
    model = _model(sizes)
    model.eval()
    inputs = _inputs(sizes, 2, seed=2)
    del inputs["ani_image"], inputs["ani_map"]
    out = _forward(model, inputs)
    _check_outputs(out, sizes, 2)
    assert np.all(np.asarray(out["attention"]) == 1.0) and np.all(np.asarray(out["ref_idx"]) == 0)
    assert model.attention is None and model.encoder.cross is None  # nothing to fuse or attend over


def test_without_warping_or_weight_generation_in_bfloat16():
    sizes = RHMSizes.tiny(warp_ref=False, warp_ani=False, adaptive_spade=False, hybrid_fusion=False)
    model = _model(sizes, dtype=jnp.bfloat16)
    inputs = {k: v for k, v in _inputs(sizes, 2, seed=3).items() if k in ("target_map", "ref_images", "ref_maps")}
    out = _forward(model, inputs)
    _check_outputs(out, sizes, 2)
    assert np.all(np.isfinite(np.asarray(out["image"])))
    assert model.weight_gen is None and model.flow_ref is None and model.flow_ani is None
    params = nnx.state(model, nnx.Param)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))


def test_warping_needs_its_inputs(tiny_k2):
    inputs = dict(tiny_k2.inputs)
    del inputs["ani_image"]
    with pytest.raises(ValueError, match="ani_image"):
        tiny_k2.model(**inputs)


def test_full_preset_parameter_count():
    sizes = RHMSizes.full()
    assert sizes.channels == (32, 64, 128, 256, 512, 1024, 1024)
    assert count_params(nnx.eval_shape(lambda: _model(sizes))) == 95_293_953  # docs/rhm_generator.md#parameter-counts


def test_only_the_fusion_self_aggregation_depends_on_k(tiny_k2):
    k3 = count_params(nnx.eval_shape(lambda: _model(RHMSizes.tiny(num_refs=3))))
    c = tiny_k2.sizes.channels[tiny_k2.sizes.n_downsample_fusion]
    assert k3 - count_params(tiny_k2.model) == 2 * (3 - 2) * c * c * 9  # two 3x3 convs, K * c -> c
