"""The speech branch (docs/decisions.md#sfe-architecture): shapes, parameter counts, and numerics vs numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from macl_jax.models.speech import (
    BiGRU,
    MemoryBank,
    MemorySlots,
    SpeechBranch,
    SpeechSizes,
    WavEncoder,
    variance_scaling,
)


def n_params(module, kind=nnx.Param) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, kind)))


def abstract(fn):
    return nnx.eval_shape(lambda: fn(nnx.Rngs(0)))


def test_wav_encoder_unit_shapes_and_count_match_spec():
    enc = abstract(lambda r: WavEncoder((16, 32, 64, 128, 256), rngs=r))
    graphdef, state = nnx.split(enc)
    maps = jax.eval_shape(
        lambda s, x: nnx.merge(graphdef, s).feature_maps(x, train=False), state, jax.ShapeDtypeStruct((3, 20, 80), jnp.float32)
    )
    expected = [(20, 80, 16), (20, 80, 16), (10, 20, 32), (10, 20, 32), (5, 10, 64), (5, 10, 64), (3, 5, 128), (3, 5, 128), (1, 1, 256)]
    assert [m.shape[1:] for m in maps] == expected
    assert n_params(enc) == 786_480
    out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x, train=False), state, jax.ShapeDtypeStruct((3, 20, 80, 1), jnp.float32))
    assert out.shape == (3, 256)


def test_wav_encoder_rejects_wrong_window():
    enc = abstract(lambda r: WavEncoder((4, 4, 4, 4, 4), rngs=r))
    with pytest.raises(ValueError, match=r"\(N, 20, 80\)"):
        enc(jnp.zeros((2, 18, 80)), train=False)


def test_flat_variance_scaling_equals_jax():
    key = jax.random.key(3)
    shape = (2, 3, 4)  # a receptive field of 2: fans differ from a dense kernel's
    for mode, dist in [("fan_out", "normal"), ("fan_avg", "normal"), ("fan_in", "uniform")]:
        ours = variance_scaling(2.0, mode, dist)(key, shape)
        ref = jax.nn.initializers.variance_scaling(2.0, mode, dist)(key, shape)
        np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-6, atol=1e-7, err_msg=mode)


def _torch_gru_numpy(x, w_ih, w_hh, b_ih, b_hh):
    """PyTorch's GRU equations, one direction, weights in PyTorch layout (3H, in)."""
    B, S, _ = x.shape
    H = w_hh.shape[1]
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))
    h = np.zeros((B, H))
    out = []
    for t in range(S):
        gi = x[:, t] @ w_ih.T + b_ih
        gh = h @ w_hh.T + b_hh
        r = sig(gi[:, :H] + gh[:, :H])
        z = sig(gi[:, H : 2 * H] + gh[:, H : 2 * H])
        n = np.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out, axis=1)


@pytest.mark.parametrize("pytorch_biases", [True, False])
def test_bigru_matches_numpy_recurrence(pytorch_biases):
    F, H, B, S = 8, 6, 2, 5  # the shapes of SMALL below, so eager-op compilations are shared
    gru = BiGRU(F, H, pytorch_biases=pytorch_biases, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    # Nonzero biases, so their placement (inside / outside r * .) is tested too.
    gru.b_ih[...] = jnp.asarray(rng.normal(size=gru.b_ih.shape), jnp.float32)
    gru.b_hh[...] = jnp.asarray(rng.normal(size=gru.b_hh.shape), jnp.float32)
    x = rng.normal(size=(B, S, F)).astype(np.float32)
    y = np.asarray(jax.jit(lambda x: gru(x))(x))
    assert y.shape == (B, S, 2 * H)
    w_ih, w_hh = np.asarray(gru.w_ih[...], np.float64), np.asarray(gru.w_hh[...], np.float64)
    b_ih, b_hh = np.asarray(gru.b_ih[...], np.float64), np.asarray(gru.b_hh[...], np.float64)
    if not pytorch_biases:
        b_hh = np.concatenate([np.zeros((2, 2 * H)), b_hh], axis=-1)
    fwd = _torch_gru_numpy(x, w_ih[0].T, w_hh[0].T, b_ih[0], b_hh[0])
    bwd = _torch_gru_numpy(x[:, ::-1], w_ih[1].T, w_hh[1].T, b_ih[1], b_hh[1])[:, ::-1]
    np.testing.assert_allclose(y[..., :H], fwd, atol=1e-5)
    np.testing.assert_allclose(y[..., H:], bwd, atol=1e-5)


def test_bigru_bfloat16_compute_tracks_float32():
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 5, 8)), jnp.float32)
    g32 = BiGRU(8, 6, rngs=nnx.Rngs(0))
    g16 = BiGRU(8, 6, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert g16.w_ih[...].dtype == jnp.float32  # parameters stay float32
    y16 = g16(x)
    assert y16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y16, np.float32), np.asarray(g32(x)), atol=0.03)


def test_bigru_counts_and_xavier_std():
    assert n_params(abstract(lambda r: BiGRU(256, 512, rngs=r))) == 2_365_440
    assert n_params(abstract(lambda r: BiGRU(256, 512, pytorch_biases=False, rngs=r))) == 2_365_440 - 2 * 2 * 512
    gru = BiGRU(64, 96, rngs=nnx.Rngs(1))
    # Xavier-normal on each direction's full (in, 3H) matrix: std = sqrt(2 / (in + 3H)).
    std = np.asarray(gru.w_ih[...]).std(axis=(1, 2))
    np.testing.assert_allclose(std, np.sqrt(2.0 / (64 + 288)), rtol=0.05)


def test_memory_bank_readout_is_convex_combination_of_slots():
    bank = MemoryBank(12, slots=5, slot_dim=3, head_hidden=7, dropout=0.5, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    bank.head.hidden.bias[...] = jnp.asarray(rng.normal(size=7), jnp.float32)
    bank.head.out.bias[...] = jnp.asarray(rng.normal(size=5), jnp.float32)
    h = rng.normal(size=(3, 4, 12)).astype(np.float32)
    readout, address = bank(jnp.asarray(h), train=False)
    assert readout.shape == (3, 4, 3) and address.shape == (3, 4, 5)
    assert readout.dtype == jnp.float32 and address.dtype == jnp.float32
    a = np.asarray(address, np.float64)
    assert np.all(a >= 0)
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-6)
    # Independent eval-mode computation: numpy MLP, softmax, matmul.
    p = {k: np.asarray(v[...], np.float64) for k, v in [
        ("w1", bank.head.hidden.kernel), ("b1", bank.head.hidden.bias), ("w2", bank.head.out.kernel), ("b2", bank.head.out.bias)]}
    logits = np.maximum(h @ p["w1"] + p["b1"], 0) @ p["w2"] + p["b2"]
    ref_a = np.exp(logits - logits.max(-1, keepdims=True))
    ref_a /= ref_a.sum(-1, keepdims=True)
    slots = np.asarray(bank.slots[...], np.float64)
    np.testing.assert_allclose(a, ref_a, atol=1e-5)
    np.testing.assert_allclose(np.asarray(readout), ref_a @ slots, atol=1e-4)
    # Inside the slots' bounding box (a consequence of convexity).
    assert np.all(np.asarray(readout) <= slots.max(0) + 1e-5) and np.all(np.asarray(readout) >= slots.min(0) - 1e-5)
    assert isinstance(bank.slots, MemorySlots)


def test_memory_bank_dropout_needs_rngs_and_acts_in_train():
    bank = MemoryBank(12, slots=5, slot_dim=3, head_hidden=7, dropout=0.5, rngs=nnx.Rngs(0))
    h = jnp.asarray(np.random.default_rng(2).normal(size=(2, 3, 12)), jnp.float32)
    with pytest.raises(ValueError, match="rngs"):
        bank(h, train=True, rngs=None)
    _, a_eval = bank(h, train=False)
    _, a_train = bank(h, train=True, rngs=nnx.Rngs(dropout=0))
    assert not np.allclose(a_eval, a_train)
    np.testing.assert_allclose(np.asarray(a_train).sum(-1), 1.0, atol=1e-6)


def test_full_speech_branch_counts_match_spec():
    branch = abstract(lambda r: SpeechBranch(memory="cs", rngs=r))
    heads = n_params(branch.content_memory.head) + n_params(branch.identity_memory.head)
    assert heads == 394_496
    assert n_params(branch, MemorySlots) == 131_072
    assert n_params(branch) == 786_480 + 2_365_440 + 394_496 + 131_072


SMALL = SpeechSizes(encoder_channels=(4, 4, 4, 4, 8), gru_hidden=6, slots=5, slot_dim=3, head_hidden=7)


@pytest.mark.parametrize("memory", ["cs", "w", "wo"])
def test_memory_variants_build_run_and_differ_by_the_memory(memory):
    branch = SpeechBranch(SMALL, memory=memory, rngs=nnx.Rngs(0))
    audio = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 3, 20, 80)), jnp.float32)
    out = branch(audio, train=True, rngs=nnx.Rngs(dropout=1))
    assert out["content"].shape == out["identity"].shape == (2, 3, 3)
    assert out["gru"].shape == (2, 3, 12)
    assert all(np.all(np.isfinite(v)) for v in out.values())
    banks = jax.tree.leaves(nnx.state(branch, MemorySlots))
    assert len(banks) == {"cs": 2, "w": 1, "wo": 0}[memory]
    if memory == "wo":
        assert "content_address" not in out and "identity_address" not in out
    else:
        assert out["content_address"].shape == out["identity_address"].shape == (2, 3, 5)
    if memory == "w":
        # Both read-outs come from the one shared bank.
        slots = np.asarray(branch.content_memory.slots[...])
        np.testing.assert_allclose(out["identity"], np.asarray(out["identity_address"]) @ slots, atol=1e-5)
        np.testing.assert_allclose(out["content"], np.asarray(out["content_address"]) @ slots, atol=1e-5)
    # Apart from the memory the variants have the same parameters: the same encoder + GRU and
    # two heads of the same hidden width.
    base = n_params(branch.encoder) + n_params(branch.gru)
    f, hh, k, c = 12, 7, 5, 3
    head_to = lambda out_dim: f * hh + hh + hh * out_dim + out_dim
    expected = {"cs": 2 * head_to(k) + 2 * k * c, "w": 2 * head_to(k) + k * c, "wo": 2 * head_to(c)}[memory]
    assert n_params(branch) == base + expected


def test_speech_branch_rejects_unknown_memory_and_bad_audio():
    with pytest.raises(ValueError, match="cs, w|'cs', 'w'"):
        SpeechBranch(SMALL, memory="both", rngs=nnx.Rngs(0))
    branch = abstract(lambda r: SpeechBranch(SMALL, memory="cs", rngs=r))
    with pytest.raises(ValueError, match="20, 80"):
        branch(jnp.zeros((2, 20, 80)), train=False)


def test_speech_sizes_refuse_encoder_widths_the_wav_encoder_cannot_take():
    for channels in [(4, 4, 4, 4), (4, 4, 0, 4, 8)]:
        with pytest.raises(ValueError, match="5 positive widths"):
            SpeechSizes(encoder_channels=channels)
    assert SpeechSizes(encoder_channels=[4, 4, 4, 4, 8]).encoder_channels == (4, 4, 4, 4, 8)
