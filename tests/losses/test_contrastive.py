"""The contrastive losses against a loop-by-loop numpy implementation, and across device counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from macl_jax.losses import contrastive


def _np_cos(a, b):
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-16))


def _np_ce_rows(logits):
    """Mean over rows of the cross-entropy with target = row index, one row at a time."""
    losses = []
    for i, row in enumerate(logits):
        m = row.max()
        losses.append(-(row[i] - m - np.log(np.sum(np.exp(row - m)))))
    return float(np.mean(losses))


def _np_topk(logits, k):
    hits = []
    for i, row in enumerate(logits):
        order = sorted(range(len(row)), key=lambda j: (-row[j], j == i))  # ties rank the target last
        hits.append(i in order[:k])
    return float(np.mean(hits))


def _np_sync(audio, video, w, b, direction):
    losses, top1, top5 = [], [], []
    for a, v in zip(audio, video):
        s = len(a)
        av = np.array([[w * _np_cos(a[i], v[j]) + b for j in range(s)] for i in range(s)])
        mats = {"audio_to_video": [av], "video_to_audio": [av.T], "symmetric": [av, av.T]}[direction]
        losses.append(np.mean([_np_ce_rows(m) for m in mats]))
        top1.append(_np_topk(mats[0], 1))
        top5.append(_np_topk(mats[0], 5))
    return float(np.mean(losses)), np.array(top1), np.array(top5)


@pytest.mark.parametrize("direction", contrastive.DIRECTIONS)
def test_sync_loss_matches_numpy(direction):
    rng = np.random.default_rng(0)
    audio = rng.normal(size=(3, 7, 6)).astype(np.float32)
    video = (audio + rng.normal(scale=1.5, size=audio.shape)).astype(np.float32)
    w, b = 7.5, -3.0
    loss, metrics = contrastive.sync_contrastive_loss(audio, video, jnp.float32(w), jnp.float32(b), direction=direction)
    ref_loss, ref_top1, ref_top5 = _np_sync(audio.astype(np.float64), video.astype(np.float64), w, b, direction)
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(metrics["sync_top1"]), ref_top1)
    np.testing.assert_allclose(np.asarray(metrics["sync_top5"]), ref_top5)


@pytest.mark.parametrize("direction", contrastive.DIRECTIONS)
@pytest.mark.parametrize("groups", [1, 2])
def test_identity_loss_matches_numpy(direction, groups):
    rng = np.random.default_rng(1)
    audio = rng.normal(size=(8, 5)).astype(np.float32)
    video = (audio + rng.normal(size=audio.shape)).astype(np.float32)
    w, b = 10.0, -5.0
    loss, metrics = contrastive.identity_contrastive_loss(
        audio, video, jnp.float32(w), jnp.float32(b), direction=direction, groups=groups
    )
    refs, top1 = [], []
    n = 8 // groups
    for g in range(groups):
        a, v = audio[g * n : (g + 1) * n].astype(np.float64), video[g * n : (g + 1) * n].astype(np.float64)
        av = np.array([[w * _np_cos(a[i], v[j]) + b for j in range(n)] for i in range(n)])
        mats = {"audio_to_video": [av], "video_to_audio": [av.T], "symmetric": [av, av.T]}[direction]
        refs.append(np.mean([_np_ce_rows(m) for m in mats]))
        top1.append(_np_topk(mats[0], 1))
    np.testing.assert_allclose(float(loss), np.mean(refs), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(metrics["identity_top1"]), top1)


def test_bias_is_inert_and_scale_is_not():
    rng = np.random.default_rng(2)
    audio, video = rng.normal(size=(2, 6, 4)), rng.normal(size=(2, 6, 4))

    def loss(w, b):
        return contrastive.sync_contrastive_loss(audio, video, w, b)[0]

    gw, gb = jax.grad(loss, argnums=(0, 1))(jnp.float32(10.0), jnp.float32(-5.0))
    assert abs(float(gb)) < 1e-6
    assert abs(float(gw)) > 1e-4


def test_perfect_alignment_scores_full_accuracy_and_ties_do_not():
    eye = np.eye(6, dtype=np.float32)[None]
    _, metrics = contrastive.sync_contrastive_loss(eye, eye, jnp.float32(10.0), jnp.float32(0.0))
    assert float(metrics["sync_top1"][0]) == 1.0
    const = np.ones((1, 6, 3), np.float32)
    _, metrics = contrastive.sync_contrastive_loss(const, const, jnp.float32(10.0), jnp.float32(0.0))
    assert float(metrics["sync_top1"][0]) == 0.0  # a collapsed model gets no credit for ties


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="one shape"):
        contrastive.sync_contrastive_loss(np.zeros((2, 5, 3)), np.zeros((2, 4, 3)), 1.0, 0.0)
    with pytest.raises(ValueError, match="divisible"):
        contrastive.identity_contrastive_loss(np.zeros((6, 3)), np.zeros((6, 3)), 1.0, 0.0, groups=4)
    with pytest.raises(ValueError, match="direction"):
        contrastive.sync_contrastive_loss(np.zeros((2, 5, 3)), np.zeros((2, 5, 3)), 1.0, 0.0, direction="both")


def test_loss_on_eight_devices_equals_one_device():
    """Global-batch negatives: the same number whether the batch lives on 1 device or 8."""
    assert jax.device_count() >= 8
    rng = np.random.default_rng(3)
    sync_a, sync_v = rng.normal(size=(2, 16, 20, 32)).astype(np.float32)
    id_a, id_v = rng.normal(size=(2, 16, 32)).astype(np.float32)

    def total(sa, sv, ia, iv):
        ls, _ = contrastive.sync_contrastive_loss(sa, sv, jnp.float32(10.0), jnp.float32(-5.0))
        li, _ = contrastive.identity_contrastive_loss(ia, iv, jnp.float32(10.0), jnp.float32(-5.0), direction="symmetric")
        return ls + li, jax.grad(lambda x: contrastive.identity_contrastive_loss(x, iv, 10.0, -5.0)[0])(ia)

    one = jax.jit(total)(sync_a, sync_v, id_a, id_v)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    shard = NamedSharding(mesh, P("data"))
    args = [jax.device_put(x, shard) for x in (sync_a, sync_v, id_a, id_v)]
    eight = jax.jit(total)(*args)
    assert len(args[2].sharding.device_set) == 8
    np.testing.assert_allclose(float(eight[0]), float(one[0]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(eight[1]), np.asarray(one[1]), rtol=1e-5, atol=1e-7)
