"""Process-count-invariant input pipeline builder shared by all trainers.

The pipeline is defined over *global positions*: position ``g`` of the
(shuffled, repeated) example stream is the same example with the same random
augmentation draw however many processes read it. Global batch ``s`` holds
positions ``[s * B, (s + 1) * B)`` and process ``p`` of ``P`` reads rows
``[p * b, (p + 1) * b)`` of it (``B = P * b``), which is the layout
``jax.make_array_from_process_local_data`` expects for a batch sharded over a
process-contiguous data axis. So a 2-process run sees exactly the batches of a
1-process run, and the iterator state (the next step) is the same on every
process.

Everything here runs inside grain (possibly in worker processes), so it is
numpy-only: no JAX and no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import sys
from typing import Any

from absl import flags
import grain
import numpy as np

__all__ = ["evaluation_dataset", "global_batch_dataset", "local_batch_size", "make_iterator"]

# Distinct SeedSequence spawn keys so the shuffle and the per-example transform
# draw from independent streams of the same user seed.
_SHUFFLE_STREAM = 0
_TRANSFORM_STREAM = 1


def local_batch_size(global_batch_size: int, process_count: int) -> int:
    """Returns the per-process batch size ``global_batch_size // process_count``."""
    if process_count < 1:
        raise ValueError(f"process_count must be >= 1, got {process_count}.")
    if global_batch_size < 1:
        raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}.")
    if global_batch_size % process_count:
        lower = (global_batch_size // process_count) * process_count
        upper = lower + process_count
        suggestion = f"{upper}" if lower == 0 else f"{lower} or {upper}"
        raise ValueError(
            f"global_batch_size={global_batch_size} is not divisible by "
            f"process_count={process_count}: every process must read the same "
            f"number of rows. Set global_batch_size to a multiple of "
            f"{process_count} (e.g. {suggestion})."
        )
    return global_batch_size // process_count


def _shuffle_seed(seed: int) -> int:
    """Hashes the user seed into grain's 32-bit shuffle seed.

    grain reshuffles epoch ``e`` with seed ``shuffle_seed + e``, so raw seeds
    ``s`` and ``s + 1`` would replay each other's epochs shifted by one; hashing
    makes such overlaps between user seeds vanishingly unlikely.
    """
    sequence = np.random.SeedSequence(seed, spawn_key=(_SHUFFLE_STREAM,))
    return int(sequence.generate_state(1, np.uint32)[0])


class _GlobalPositionTransform:
    """Calls ``transform(example, rng)`` with an rng keyed by (seed, global position).

    grain's own ``random_map`` keys its rng by the index *in the dataset it is
    applied to*, which would tie the draws to where it sits in the pipeline and to
    grain's internal Philox layout; keying explicitly on the global position
    keeps the draws fixed across process counts, restores and grain upgrades.
    """

    def __init__(self, transform: Callable[[Any, np.random.Generator], Any], seed: int):
        self._transform = transform
        self._seed = seed

    def __call__(self, global_position: int, example: Any) -> Any:
        sequence = np.random.SeedSequence(
            self._seed, spawn_key=(_TRANSFORM_STREAM, global_position)
        )
        return self._transform(example, np.random.Generator(np.random.PCG64(sequence)))


class _ProcessRowsMapDataset(grain.MapDataset):
    """Maps process-local position ``i`` to global position ``(i//b)*B + p*b + i%b``."""

    _MUTATES_ELEMENT_SPEC = False

    def __init__(
        self,
        parent: grain.MapDataset,
        *,
        local_batch: int,
        process_index: int,
        process_count: int,
        drop_remainder: bool,
    ):
        super().__init__(parent)
        self._local_batch = local_batch
        self._global_batch = local_batch * process_count
        self._offset = process_index * local_batch
        global_length = len(parent)
        full_batches, remainder = divmod(global_length, self._global_batch)
        length = full_batches * local_batch
        if not drop_remainder:
            # This process's share of the final partial global batch; may be short or
            # empty for the highest process indices.
            length += min(max(remainder - self._offset, 0), local_batch)
        # An infinitely repeated parent reports sys.maxsize; keep reporting that so
        # downstream grain code keeps treating the dataset as infinite.
        self._length = sys.maxsize if global_length >= sys.maxsize else length

    def __len__(self) -> int:
        return self._length

    def __str__(self) -> str:
        return (
            f"_ProcessRowsMapDataset(local_batch={self._local_batch}, "
            f"global_batch={self._global_batch}, offset={self._offset})"
        )

    def _global_position(self, index: int) -> int:
        step, row = divmod(index, self._local_batch)
        return step * self._global_batch + self._offset + row

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return self._parent[self._global_position(index)]

    def _getitems(self, indices: Sequence[int]):
        # Forwarded as one call so batched-read sources (ArrayRecord) stay batched.
        positions = [self._global_position(i) for i in indices]
        return self._parent._getitems(positions)  # pylint: disable=protected-access


def global_batch_dataset(
    source: Any,
    *,
    global_batch_size: int,
    process_index: int,
    process_count: int,
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    transform: Callable[[Any, np.random.Generator], Any] | None = None,
    drop_remainder: bool = True,
) -> grain.MapDataset:
    """Returns this process's batches of a process-count-invariant global stream.

    Args:
        source: random-access source (``__len__``/``__getitem__``) of examples,
            each a dict of numpy arrays or scalars.
        global_batch_size: B, rows per step summed over all processes.
        process_index: this process, ``jax.process_index()``.
        process_count: number of processes, ``jax.process_count()``.
        seed: non-negative seed for the per-epoch permutation and ``transform``.
        shuffle: permute each epoch (a new permutation per epoch); if False the
            source order is repeated.
        num_epochs: number of passes over ``source``; None repeats forever.
            Epochs are concatenated, so a global batch can straddle two epochs.
        transform: optional ``transform(example, rng)``; ``rng`` is a fresh
            ``np.random.Generator`` determined by (seed, global position) only. Must
            be numpy-only and picklable when workers are used.
        drop_remainder: drop the final partial global batch of a finite stream. If
            False it is kept and process ``p`` gets its rows of it, which can be
            fewer than ``b`` or none at all (then that process has one batch fewer);
            multi-process SPMD callers must then pad, so keep True for training.

    Returns:
        A ``grain.MapDataset`` whose element ``s`` is a dict of stacked arrays with
        leading dimension ``b = global_batch_size // process_count``: rows
        ``[p*b, (p+1)*b)`` of global batch ``s``.

    Raises:
        ValueError: on a bad argument, if ``global_batch_size`` is not divisible by
            ``process_count``, or if ``source`` is shorter than one global batch with
            ``drop_remainder=True``.
    """
    local_batch = local_batch_size(global_batch_size, process_count)
    if not 0 <= process_index < process_count:
        raise ValueError(
            f"process_index={process_index} is outside [0, {process_count}); pass "
            "jax.process_index() and jax.process_count()."
        )
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    seed = int(seed)
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(
            f"num_epochs must be a positive integer or None (repeat forever), got {num_epochs}."
        )
    if not (hasattr(source, "__len__") and hasattr(source, "__getitem__")):
        raise TypeError(
            f"source must support random access (__len__ and __getitem__), got "
            f"{type(source).__name__}; wrap iterables in a list or a grain data source."
        )
    num_examples = len(source)
    if num_examples == 0:
        raise ValueError("source is empty; check the dataset path and split.")
    if drop_remainder and num_examples < global_batch_size:
        raise ValueError(
            f"source has {num_examples} examples, fewer than one global batch "
            f"(global_batch_size={global_batch_size}), so drop_remainder=True would "
            f"yield nothing useful. Lower global_batch_size to at most "
            f"{num_examples} (a multiple of process_count={process_count}) or pass "
            "drop_remainder=False."
        )

    ds = grain.MapDataset.source(source)
    if shuffle:
        # grain's shuffle permutes each epoch (index // len) with its own seed when
        # indexed past one epoch, which is what the repeat below does.
        ds = ds.shuffle(seed=_shuffle_seed(seed))
    ds = ds.repeat(num_epochs)
    if transform is not None:
        # Applied before the per-process row selection, so the index it sees is
        # the global position.
        ds = ds.map_with_index(_GlobalPositionTransform(transform, seed))
    ds = _ProcessRowsMapDataset(
        ds,
        local_batch=local_batch,
        process_index=process_index,
        process_count=process_count,
        drop_remainder=drop_remainder,
    )
    return ds.batch(local_batch, drop_remainder=False)


class _GlobalStreamIterator(grain.DatasetIterator):
    """Iterates this process's batches; its state is the position in the global stream.

    The position (batches delivered so far) is the same on every process, and the batch at a
    position does not depend on the number of processes or workers, so a state restores into an
    iterator built for another process count or worker count (a resized job) and resumes at
    exactly the next global batch. Restoring seeks in O(1): the pipeline is rebuilt from
    `dataset[position:]`.
    """

    # Read by macl_jax.checkpoint: any process's saved state is valid for every process.
    process_count_invariant = True

    def __init__(self, dataset: grain.MapDataset, worker_count: int, prefetch: int):
        self._dataset = dataset
        self._worker_count = worker_count
        self._prefetch = prefetch
        self._position = 0
        super().__init__(self._pipeline(0))

    def _pipeline(self, position: int) -> grain.DatasetIterator:
        ds = self._dataset[position:] if position else self._dataset
        # One thread per buffered batch: more threads could never have work.
        ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=self._prefetch, prefetch_buffer_size=self._prefetch))
        if self._worker_count > 0:
            if not flags.FLAGS.is_parsed():
                # grain's multiprocessing reads its absl flags (with defaults) and raises
                # UnparsedFlagAccessError when the program never parsed flags (pytest,
                # notebooks, scripts without absl.app); defaults are what they would get.
                flags.FLAGS.mark_as_parsed()
            # Workers each take batches i::worker_count and grain interleaves them back
            # round-robin, so the order matches worker_count=0.
            ds = ds.mp_prefetch(
                grain.MultiprocessingOptions(num_workers=self._worker_count, per_worker_buffer_size=max(self._prefetch, 1))
            )
        return iter(ds)

    def __next__(self) -> Any:
        batch = next(self._parent)
        self._position += 1
        return batch

    def get_state(self) -> dict[str, Any]:
        return {"position": self._position}

    def set_state(self, state: dict[str, Any]) -> None:
        position = state.get("position") if isinstance(state, dict) else None
        if not isinstance(position, int) or position < 0:
            raise ValueError(
                "Not an iterator state from data_pipelines.loader.make_iterator (expected "
                f"{{'position': <batches delivered>}}, got {state!r:.200}); restore states "
                "saved from the iterator that make_iterator returns."
            )
        old = self._parent
        self._parents = (self._pipeline(position),)
        self._ctx = self._parent._ctx
        self._position = position
        if hasattr(old, "close"):
            old.close()

    def close(self) -> None:
        if hasattr(self._parent, "close"):
            self._parent.close()

    def __str__(self) -> str:
        return f"_GlobalStreamIterator(position={self._position}, worker_count={self._worker_count})"


def make_iterator(
    dataset: grain.MapDataset, *, worker_count: int = 0, prefetch: int = 2
) -> grain.DatasetIterator:
    """Returns a checkpointable iterator over ``dataset`` batches.

    Args:
        dataset: the result of ``global_batch_dataset`` or ``evaluation_dataset``.
        worker_count: worker processes for reading and transforming (0 = in this
            process). Workers are spawned (not forked) and unpickle the pipeline, so
            the source and transform must be picklable and importable; call
            ``close()`` on the iterator when done to stop them.
        prefetch: batches read ahead (per worker when ``worker_count > 0``); 0
            reads synchronously.

    Returns:
        A ``grain.DatasetIterator`` supporting ``get_state()``/``set_state()`` (and
        so ``grain.checkpoint.CheckpointSave``). Its state is the position in the
        global stream: identical on every process, and valid for any process count
        and worker count.
    """
    if not isinstance(dataset, grain.MapDataset):
        raise TypeError(
            f"dataset must be a grain.MapDataset (from global_batch_dataset), got "
            f"{type(dataset).__name__}."
        )
    if worker_count < 0:
        raise ValueError(f"worker_count must be >= 0, got {worker_count}.")
    if prefetch < 0:
        raise ValueError(f"prefetch must be >= 0, got {prefetch}.")
    return _GlobalStreamIterator(dataset, worker_count, prefetch)


class _PaddedSource:
    """The source, plus rows that repeat example 0 up to `length`; `valid` tells them apart."""

    def __init__(self, source: Any, length: int):
        self._source = source
        self._num_real = len(source)
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, Any]:
        real = index < self._num_real
        example = dict(self._source[index if real else 0])
        if "valid" in example:
            raise ValueError("evaluation examples must not have a field named 'valid'; it marks padding rows")
        example["valid"] = np.float32(real)
        return example


def evaluation_dataset(
    source: Any,
    *,
    global_batch_size: int,
    process_index: int,
    process_count: int,
    transform: Callable[[Any, np.random.Generator], Any] | None = None,
) -> grain.MapDataset:
    """One ordered pass over `source`, padded to whole global batches.

    Every process runs the same number of batches (SPMD programs must), and a float32 `valid`
    field (1 for real rows, 0 for padding) lets reductions ignore the padding, so results do not
    depend on the batch size or the number of processes.
    """
    local_batch_size(global_batch_size, process_count)
    num_examples = len(source)
    if num_examples == 0:
        raise ValueError("evaluation source is empty; check the dataset path and split.")
    padded = -(-num_examples // global_batch_size) * global_batch_size
    return global_batch_dataset(
        _PaddedSource(source, padded),
        global_batch_size=global_batch_size,
        process_index=process_index,
        process_count=process_count,
        seed=0,
        shuffle=False,
        num_epochs=1,
        transform=transform,
        drop_remainder=True,
    )
