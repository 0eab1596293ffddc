"""Tests for the process-count-invariant input pipeline (data_pipelines.loader).

grain workers are spawned and re-import this module to unpickle the source and the
transform, so everything they need is defined at module level without side effects.
"""

from __future__ import annotations

import grain
import numpy as np
import pytest

from data_pipelines.loader import global_batch_dataset, local_batch_size, make_iterator


class _ArraySource:
    """Random-access source of `{"id", "feat"}` examples, like a tfds ArrayRecord source."""

    def __init__(self, size: int):
        self._size = size

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {"id": np.int64(index), "feat": np.full((3,), index, np.float32)}


def _jitter(example: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random per-example transform: records its draws so tests can compare them."""
    noise = rng.normal(size=2).astype(np.float32)
    return {**example, "draw": rng.integers(0, 2**62), "noise": noise}


def _datasets(num_processes: int, size: int = 10, global_batch: int = 4, **kwargs):
    kwargs.setdefault("seed", 7)
    return [
        global_batch_dataset(
            _ArraySource(size),
            global_batch_size=global_batch,
            process_index=p,
            process_count=num_processes,
            **kwargs,
        )
        for p in range(num_processes)
    ]


def _global_batch(datasets, step: int) -> dict[str, np.ndarray]:
    """Concatenates the processes' local batches of one step in process order."""
    local = [ds[step] for ds in datasets]
    return {key: np.concatenate([batch[key] for batch in local]) for key in local[0]}


def _assert_batches_equal(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


def _ids(datasets, steps: range) -> np.ndarray:
    return np.concatenate([_global_batch(datasets, s)["id"] for s in steps])


@pytest.mark.parametrize("num_processes", [2, 4])
def test_local_batches_concatenate_to_the_single_process_global_batch(num_processes):
    # 10 examples, batches of 8: steps 0..5 cross several epoch boundaries, and
    # some global batches straddle two epochs.
    (reference,) = _datasets(1, global_batch=8, transform=_jitter)
    sharded = _datasets(num_processes, global_batch=8, transform=_jitter)
    for ds in sharded:
        assert ds[0]["id"].shape == (8 // num_processes,)
        assert ds[0]["feat"].shape == (8 // num_processes, 3)
    for step in range(6):
        _assert_batches_equal(_global_batch(sharded, step), reference[step])


def test_global_stream_is_concatenated_epoch_permutations():
    (ds,) = _datasets(1, size=10, global_batch=5)
    ids = _ids([ds], range(6)).reshape(3, 10)
    for epoch in ids:
        assert sorted(epoch.tolist()) == list(range(10))
    assert ids[0].tolist() != ids[1].tolist() != ids[2].tolist()


def test_processes_read_disjoint_examples_covering_each_epoch():
    datasets = _datasets(2, size=12, global_batch=4, num_epochs=1)
    assert [len(ds) for ds in datasets] == [3, 3]
    per_process = [np.concatenate([ds[s]["id"] for s in range(len(ds))]) for ds in datasets]
    assert not set(per_process[0].tolist()) & set(per_process[1].tolist())
    assert sorted(np.concatenate(per_process).tolist()) == list(range(12))


def test_drop_remainder_controls_the_final_partial_global_batch():
    dropped = _datasets(2, size=10, global_batch=4, num_epochs=1)
    assert [len(ds) for ds in dropped] == [2, 2]
    ids = _ids(dropped, range(2))
    assert len(set(ids.tolist())) == 8

    (single,) = _datasets(1, size=10, global_batch=4, num_epochs=1, drop_remainder=False)
    assert len(single) == 3
    assert sorted(_ids([single], range(3)).tolist()) == list(range(10))
    # With 2 processes the last global batch has 2 rows: all of them are process 0's.
    kept = _datasets(2, size=10, global_batch=4, num_epochs=1, drop_remainder=False)
    assert [len(ds) for ds in kept] == [3, 2]
    np.testing.assert_array_equal(kept[0][2]["id"], single[2]["id"])


def test_finite_epochs_stop_after_the_last_batch():
    (ds,) = _datasets(1, size=10, global_batch=4, num_epochs=2)
    iterator = make_iterator(ds)
    batches = list(iterator)
    assert len(batches) == 5  # 20 positions // 4, remainder 0
    ids = np.concatenate([b["id"] for b in batches])
    assert sorted(ids.tolist()) == sorted(list(range(10)) * 2)


def test_seed_controls_the_order_and_shuffle_false_keeps_source_order():
    steps = range(5)
    same_a = _ids(_datasets(1, seed=1), steps)
    same_b = _ids(_datasets(1, seed=1), steps)
    other = _ids(_datasets(1, seed=2), steps)
    np.testing.assert_array_equal(same_a, same_b)
    assert same_a.tolist() != other.tolist()
    # Consecutive seeds must not replay each other's epochs shifted by one (grain
    # reseeds epoch e with shuffle_seed + e).
    assert same_a[10:20].tolist() != other[:10].tolist()
    in_order = _ids(_datasets(1, shuffle=False), steps)
    assert in_order.tolist() == list(range(10)) * 2


def test_transform_draws_depend_only_on_seed_and_global_position():
    (reference,) = _datasets(1, size=10, global_batch=4, transform=_jitter)
    sharded = _datasets(2, size=10, global_batch=4, transform=_jitter)
    draws = []
    for step in range(5):
        batch = _global_batch(sharded, step)
        _assert_batches_equal(batch, reference[step])
        draws.append(batch["draw"])
    # The same example at another position (next epoch) gets a fresh draw.
    draws = np.concatenate(draws)
    assert len(set(draws.tolist())) == len(draws)
    (reseeded,) = _datasets(1, size=10, global_batch=4, transform=_jitter, seed=8)
    assert reseeded[0]["draw"].tolist() != reference[0]["draw"].tolist()


def _assert_restores_next_batch(ds: grain.MapDataset, worker_count: int, tmp_path) -> None:
    """Consume 3 batches, checkpoint, consume one more; a fresh restored iterator yields it."""
    iterator = make_iterator(ds, worker_count=worker_count)
    restored = make_iterator(ds, worker_count=worker_count)
    handler = grain.checkpoint.CheckpointHandler()  # what grain.checkpoint.CheckpointSave uses
    try:
        for _ in range(3):
            next(iterator)
        state = iterator.get_state()
        handler.save(tmp_path, item=iterator)  # stored as JSON
        remembered = next(iterator)
        handler.restore(tmp_path, item=restored)
        assert restored.get_state() == state
        _assert_batches_equal(next(restored), remembered)
    finally:
        iterator.close()
        restored.close()


def test_iterator_state_restores_the_next_batch(tmp_path):
    (ds,) = _datasets(1, size=10, global_batch=4, transform=_jitter)
    _assert_restores_next_batch(ds, worker_count=0, tmp_path=tmp_path)
    # Every process holds the same state: it counts steps of the global stream.
    processes = [make_iterator(ds) for ds in _datasets(2, size=10, global_batch=4)]
    for iterator in processes:
        next(iterator)
    assert processes[0].get_state() == processes[1].get_state()


def test_iterator_with_workers_keeps_order_and_restores_state(tmp_path):
    (ds,) = _datasets(1, size=10, global_batch=4, transform=_jitter, num_epochs=2)
    with_workers = make_iterator(ds, worker_count=2)
    try:
        batches = list(with_workers)
    finally:
        with_workers.close()
    in_process = list(make_iterator(ds))
    assert len(batches) == len(in_process) == 5
    for actual, expected in zip(batches, in_process):
        _assert_batches_equal(actual, expected)
    _assert_restores_next_batch(ds, worker_count=2, tmp_path=tmp_path)


def test_state_restores_across_worker_and_process_counts():
    """A resized job: the state of a 1-process, 0-worker run resumes a 2-process, 2-worker one."""
    (single,) = _datasets(1, size=20, global_batch=4, num_epochs=3)
    iterator = make_iterator(single)
    for _ in range(7):
        next(iterator)
    state = iterator.get_state()
    expected = next(iterator)
    halves = []
    for ds in _datasets(2, size=20, global_batch=4, num_epochs=3):
        resumed = make_iterator(ds, worker_count=2)
        try:
            resumed.set_state(state)
            halves.append(next(resumed))
        finally:
            resumed.close()
    for key in expected:
        np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), expected[key])


def test_foreign_state_is_rejected():
    (ds,) = _datasets(1)
    with pytest.raises(ValueError, match="Not an iterator state"):
        make_iterator(ds).set_state({"next_index": 3})


def test_errors_name_the_fix():
    assert local_batch_size(8, 4) == 2
    fix = r"not divisible by process_count=3.*multiple of 3 \(e.g. 6 or 9\)"
    with pytest.raises(ValueError, match=fix):
        local_batch_size(8, 3)
    with pytest.raises(ValueError, match="not divisible"):
        _datasets(3, global_batch=4)
    with pytest.raises(ValueError, match="fewer than one global batch.*drop_remainder=False"):
        _datasets(1, size=3, global_batch=4)
    assert len(_datasets(1, size=3, global_batch=4, num_epochs=1, drop_remainder=False)[0]) == 1
    with pytest.raises(ValueError, match="process_index=2"):
        global_batch_dataset(
            _ArraySource(10), global_batch_size=4, process_index=2, process_count=2, seed=0
        )
    with pytest.raises(ValueError, match="seed"):
        _datasets(1, seed=-1)
