"""CheckpointManager: resharding restore, async + keep policy, grain state, corruption, SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx, struct
from jax.sharding import NamedSharding, PartitionSpec as P

from macl_jax.checkpoint import CheckpointError, CheckpointManager


@struct.dataclass
class State:
    step: jax.Array
    params: nnx.State
    extra: dict


class Net(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        # nnx.List gives integer keys in the state, which Orbax stores as strings.
        self.layers = nnx.List([nnx.Linear(4, 16, rngs=rngs), nnx.Linear(16, 8, rngs=rngs)])


def make_mesh(shape, names, devices):
    return jax.make_mesh(shape, names, axis_types=(jax.sharding.AxisType.Auto,) * len(shape), devices=devices)


@pytest.fixture(scope="module")
def mesh8():
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices: tests/conftest.py sets --xla_force_host_platform_device_count=8")
    return make_mesh((8,), ("data",), jax.devices()[:8])


def row_spec(x, axes):
    """Shards axis 0 over `axes` where it divides, else replicates."""
    return P(axes) if x.ndim and x.shape[0] % 8 == 0 else P()


def make_state(mesh, step=0, seed=0) -> State:
    params = nnx.state(Net(nnx.Rngs(seed)))
    state = State(
        step=jnp.int32(step),
        params=params,
        extra={"table": jnp.arange(64 * 3, dtype=jnp.float32).reshape(64, 3) + seed},
    )
    return jax.tree.map(lambda x: jax.device_put(x, NamedSharding(mesh, row_spec(x, "data"))), state)


def abstract_of(state, sharding_fn):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding_fn(x)), state)


def replicated_abstract(state, mesh):
    return abstract_of(state, lambda x: NamedSharding(mesh, P()))


def assert_same_values(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def warnings_text(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_restore_onto_other_mesh_and_single_device(tmp_path, mesh8):
    state = make_state(mesh8, step=7)
    assert state.extra["table"].sharding.spec == P("data")
    with CheckpointManager(tmp_path, async_save=False) as mgr:
        assert mgr.save(7, state, metadata={"lr": np.float32(0.5)}, force=True)
        assert mgr.latest_step() == 7
        assert mgr.metadata(7)["user"] == {"lr": 0.5}

    mesh42 = make_mesh((4, 2), ("data", "fsdp"), jax.devices()[:8])
    abstract42 = abstract_of(
        state,
        lambda x: NamedSharding(
            mesh42, P("data", "fsdp") if x.ndim == 2 and x.shape[0] % 4 == 0 and x.shape[1] % 2 == 0 else P()
        ),
    )
    mesh1 = make_mesh((1,), ("data",), jax.devices()[:1])
    abstract1 = replicated_abstract(state, mesh1)
    with CheckpointManager(tmp_path) as mgr:
        for abstract in (abstract42, abstract1):
            restored, step = mgr.restore(abstract)
            assert step == 7
            assert_same_values(restored, state)
            for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(abstract)):
                assert got.sharding == want.sharding
        assert restored.extra["table"].sharding.mesh.devices.size == 1
        assert int(restored.step) == 7


def test_async_save_keep_policy_and_interval(tmp_path, mesh8):
    state = make_state(mesh8)
    with CheckpointManager(tmp_path / "keep", max_to_keep=2, keep_period=4, async_save=True) as mgr:
        for step in range(1, 10):
            assert mgr.save(step, state)
        mgr.wait_until_finished()
        assert mgr.all_steps() == [4, 8, 9]
        assert mgr.latest_step() == 9
        assert not mgr.save(9, state, force=True), "an existing step is never written twice"
    on_disk = sorted(p.name for p in (tmp_path / "keep").iterdir() if p.name.isdigit())
    assert on_disk == ["4", "8", "9"]

    with CheckpointManager(tmp_path / "interval", save_interval_steps=3, async_save=True) as mgr:
        saved = [step for step in range(1, 8) if mgr.save(step, state)]
        assert saved == [3, 6]
        assert mgr.save(7, state, force=True)
        mgr.wait_until_finished()
        assert mgr.all_steps() == [3, 6, 7]


def test_grain_iterator_round_trip(tmp_path, mesh8):
    def dataset():
        return grain.MapDataset.range(100).shuffle(seed=0).batch(4).to_iter_dataset()

    state = make_state(mesh8)
    it = iter(dataset())
    for _ in range(3):
        next(it)
    with CheckpointManager(tmp_path, async_save=True) as mgr:
        assert mgr.save(3, state, data_iterator=it, force=True)
        expected = next(it)  # consumed after the save: must not leak into the checkpoint
        mgr.wait_until_finished()

    fresh = iter(dataset())
    first = next(iter(dataset()))
    assert not np.array_equal(first, expected)
    with CheckpointManager(tmp_path) as mgr:
        _, step = mgr.restore(replicated_abstract(state, mesh8), data_iterator=fresh)
    assert step == 3
    np.testing.assert_array_equal(next(fresh), expected)


def _truncate_state_data(step_dir: Path) -> None:
    files = [p for p in (step_dir / "state" / "d").iterdir() if p.is_file()]
    assert files
    for f in files:
        with open(f, "r+b") as fh:
            fh.truncate(f.stat().st_size // 2)


def _delete_state_manifest(step_dir: Path) -> None:
    (step_dir / "state" / "manifest.ocdbt").unlink()


@pytest.mark.parametrize("damage", [_truncate_state_data, _delete_state_manifest], ids=["truncated", "deleted"])
def test_corrupt_latest_falls_back_and_is_kept(tmp_path, mesh8, caplog, damage):
    s1, s2 = make_state(mesh8, step=1, seed=1), make_state(mesh8, step=2, seed=2)
    with CheckpointManager(tmp_path, async_save=False) as mgr:
        mgr.save(1, s1, force=True)
        mgr.save(2, s2, force=True)
    damage(tmp_path / "2")

    with caplog.at_level(logging.WARNING), CheckpointManager(tmp_path) as mgr:
        assert mgr.latest_step() == 2  # finalized, so listed until a restore finds it unreadable
        restored, step = mgr.restore(replicated_abstract(s1, mesh8))
        assert step == 1
        assert_same_values(restored, s1)
        assert mgr.all_steps() == [1]
    moved = list(tmp_path.glob("2.corrupt-*"))
    assert len(moved) == 1 and (moved[0] / "state").is_dir()
    assert not (tmp_path / "2").exists()
    assert str(tmp_path / "2") in warnings_text(caplog)


def test_unfinished_save_is_ignored_and_preserved(tmp_path, mesh8, caplog):
    s1, s2 = make_state(mesh8, step=1, seed=1), make_state(mesh8, step=2, seed=2)
    with CheckpointManager(tmp_path, async_save=False) as mgr:
        mgr.save(1, s1, force=True)
        mgr.save(2, s2, force=True)
    # What a process killed mid-save leaves behind: Orbax's temp dir, never renamed to "2".
    unfinished = tmp_path / "2.orbax-checkpoint-tmp"
    (tmp_path / "2").rename(unfinished)

    with caplog.at_level(logging.WARNING), CheckpointManager(tmp_path, async_save=False) as mgr:
        assert mgr.latest_step() == 1
        restored, step = mgr.restore(replicated_abstract(s1, mesh8))
        assert step == 1
        assert_same_values(restored, s1)
        assert unfinished.is_dir()
        assert str(unfinished) in warnings_text(caplog)
        # Re-saving step 2 would make Orbax delete the leftover; it is moved aside instead.
        assert mgr.save(2, s2, force=True)
        assert mgr.all_steps() == [1, 2]
    preserved = list(tmp_path.glob("2.incomplete-*"))
    assert len(preserved) == 1 and (preserved[0] / "state").is_dir()
    assert not unfinished.exists()


def test_all_corrupt_raises_and_mismatch_moves_nothing(tmp_path, mesh8):
    state = make_state(mesh8, step=1)
    with CheckpointManager(tmp_path, async_save=False) as mgr:
        mgr.save(1, state, force=True)
        wrong = replicated_abstract(state, mesh8)
        table = jax.ShapeDtypeStruct((32, 3), jnp.float32, sharding=NamedSharding(mesh8, P()))
        wrong = wrong.replace(extra={"table": table})
        with pytest.raises(CheckpointError, match="shape mismatch"):
            mgr.restore(wrong)
        mesh42 = make_mesh((4, 2), ("data", "fsdp"), jax.devices()[:8])
        indivisible = abstract_of(state, lambda x: NamedSharding(mesh42, P(None, "fsdp") if x.ndim == 2 else P()))
        with pytest.raises(ValueError, match="does not fit shape"):
            mgr.restore(indivisible)  # table is (64, 3): 3 does not split over fsdp=2
        assert (tmp_path / "1").is_dir(), "a caller's mistake must not be treated as corruption"

        _delete_state_manifest(tmp_path / "1")
        with pytest.raises(CheckpointError, match=str(tmp_path)):
            mgr.restore(replicated_abstract(state, mesh8))
    # With no readable step there is no proof the files (not the request) are at fault.
    assert (tmp_path / "1").is_dir() and not list(tmp_path.glob("1.corrupt-*"))


def test_fingerprint_mismatch_warns(tmp_path, mesh8, caplog):
    state = make_state(mesh8, step=1)
    with CheckpointManager(tmp_path, async_save=False, fingerprint="fp-old") as mgr:
        mgr.save(1, state, force=True)
        assert mgr.metadata(1)["fingerprint"] == "fp-old"
    with caplog.at_level(logging.WARNING), CheckpointManager(tmp_path, fingerprint="fp-old") as mgr:
        mgr.restore(replicated_abstract(state, mesh8))
    assert "fp-old" not in warnings_text(caplog)
    with caplog.at_level(logging.WARNING), CheckpointManager(tmp_path, fingerprint="fp-new") as mgr:
        _, step = mgr.restore(replicated_abstract(state, mesh8))
    assert step == 1
    text = warnings_text(caplog)
    assert "fp-old" in text and "fp-new" in text


def test_sigterm_sets_preemption_and_close_restores_handler(tmp_path, mesh8):
    calls = []

    def previous(signum, frame):
        calls.append(signum)

    original = signal.signal(signal.SIGTERM, previous)
    try:
        mgr = CheckpointManager(tmp_path, save_interval_steps=1000, async_save=False)
        assert signal.getsignal(signal.SIGTERM) is not previous
        assert not mgr.reached_preemption(5)
        os.kill(os.getpid(), signal.SIGTERM)
        assert mgr.reached_preemption(5)
        assert calls == [signal.SIGTERM], "the previous handler is chained"
        assert mgr.save(5, make_state(mesh8, step=5)), "a preemption saves regardless of the interval"
        mgr.close()
        assert signal.getsignal(signal.SIGTERM) is previous
        assert mgr.all_steps() == [5]
    finally:
        signal.signal(signal.SIGTERM, original)
