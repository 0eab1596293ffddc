"""Checkpointing on top of Orbax: sharded train state, grain iterator and JSON metadata per step.

One step is an Orbax composite checkpoint::

    <directory>/<step>/state/   the train state (OCDBT), restorable onto any mesh or device count
    <directory>/<step>/meta/    JSON: step, fingerprint, wall_time, user (the caller's metadata)
    <directory>/<step>/data/    grain iterator state, one JSON file per process (only if given)

Nothing is ever deleted except by the keep policy. A step that cannot be read is renamed to
``<step>.corrupt-<UTC time>``; the directory of a save that never finished
(``<step>.orbax-checkpoint-tmp``) is never listed as a step and is renamed to
``<step>.incomplete-<UTC time>`` before that step is written again, because Orbax would delete it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

__all__ = ["CheckpointError", "CheckpointManager"]

_STATE, _META, _DATA = "state", "meta", "data"
# The barrier Orbax's Checkpointer.restore ends with (no key prefix in our options).
_ORBAX_RESTORE_BARRIER = "Checkpointer:restore"
_META_FORMAT = 1


class CheckpointError(RuntimeError):
    """No usable checkpoint, or a checkpoint that does not fit what the caller asked for."""


class _Unreadable(Exception):
    """The files of one step are damaged (as opposed to a mismatch with the caller's request)."""


def _utc_stamp() -> str:
    # No '_' and no '.orbax-checkpoint-tmp': Orbax must never parse a renamed dir as a step.
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _short(exc: BaseException, limit: int = 300) -> str:
    """One line of an exception: tensorstore errors carry kilobytes of JSON spec."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[:limit] + " ..."
    return f"{type(exc).__name__}: {text}"


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic, np.ndarray, jax.Array)):
        return np.asarray(value).tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _first_bad_json(value: Any, where: str) -> str:
    """Path of the first value that json.dumps rejects, for the error message."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                return f"{where}[{k!r}] (key of type {type(k).__name__})"
            found = _first_bad_json(v, f"{where}[{k!r}]")
            if found:
                return found
        return ""
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _first_bad_json(v, f"{where}[{i}]")
            if found:
                return found
        return ""
    try:
        json.dumps(value, default=_json_default)
    except (TypeError, ValueError):
        return f"{where} (a {type(value).__name__})"
    return ""


def _to_json(metadata: dict | None) -> dict:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict of JSON values, got {type(metadata).__name__}")
    try:
        return json.loads(json.dumps(metadata, default=_json_default))
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"checkpoint metadata is not JSON-serialisable at {_first_bad_json(metadata, 'metadata') or '?'}; "
            "pass only str keys and int/float/str/bool/None/list/dict values (numpy and jax arrays are converted)"
        ) from e


def _handler_registry() -> ocp.handlers.DefaultCheckpointHandlerRegistry:
    """Handlers declared up front so that a fresh manager can read metadata before any save."""
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    pairs = (
        (_STATE, ocp.args.StandardSave, ocp.args.StandardRestore, ocp.handlers.StandardCheckpointHandler()),
        (_META, ocp.args.JsonSave, ocp.args.JsonRestore, ocp.handlers.JsonCheckpointHandler()),
        (
            _DATA,
            grain.checkpoint.CheckpointSave,
            grain.checkpoint.CheckpointRestore,
            grain.checkpoint.CheckpointHandler(),
        ),
    )
    for item, save_args, restore_args, handler in pairs:
        registry.add(item, save_args, handler)
        registry.add(item, restore_args, handler)
    return registry


def _path_str(path: tuple) -> str:
    return "/".join(str(k) for k in path)


class CheckpointManager:
    """Saves and restores (state, data iterator, metadata) per step; see the module docstring.

    Must be created and called by every process of the job (Orbax coordinates them). Not
    thread-safe, and one job at a time may write to `directory`.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        max_to_keep: int = 3,
        keep_period: int | None = None,
        save_interval_steps: int = 1,
        async_save: bool = True,
        fingerprint: str | None = None,
        handle_preemption: bool = True,
    ):
        """`handle_preemption=False` for secondary managers of a run (e.g. the best state): the
        primary one owns SIGTERM."""
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
        if keep_period is not None and keep_period < 1:
            raise ValueError(f"keep_period must be >= 1 or None (off), got {keep_period}")
        if save_interval_steps < 1:
            raise ValueError(f"save_interval_steps must be >= 1, got {save_interval_steps}")
        self._fingerprint = fingerprint
        preserve: list = [ocp.checkpoint_managers.LatestN(n=max_to_keep)]
        if keep_period is not None:
            preserve.append(ocp.checkpoint_managers.EveryNSteps(interval_steps=keep_period))
        options = ocp.CheckpointManagerOptions(
            # Orbax's default also saves the first step it sees whatever the interval; we don't.
            save_decision_policy=ocp.checkpoint_managers.AnySavePolicy(
                [
                    ocp.checkpoint_managers.FixedIntervalPolicy(save_interval_steps),
                    ocp.checkpoint_managers.PreemptionCheckpointingPolicy(),
                ]
            ),
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(preserve),
            enable_async_checkpointing=async_save,
            create=True,  # Orbax creates the root on the primary process behind a barrier
            cleanup_tmp_directories=False,  # interrupted saves are kept for inspection
        )
        directory = epath.Path(directory)
        if "://" not in os.fspath(directory):
            # Orbax's tensorstore layer rejects relative paths ("Checkpoint path should be absolute").
            directory = epath.Path(os.path.abspath(os.fspath(directory)))
        self._mgr = ocp.CheckpointManager(directory, options=options, handler_registry=_handler_registry())
        self._pending_step: int | None = None
        self._passed_restore_barrier = False
        self._barrier_count = 0
        self._closed = False
        self._sigterm = False
        self._sigterm_logged = False
        self._prev_sigterm: Any = None
        self._sigterm_handler = None
        # With several processes jax's preemption sync manager owns SIGTERM, and it makes all
        # processes agree on the step at which to stop; a handler here would break that.
        self._orbax_preemption = ocp.multihost.process_count() > 1
        if handle_preemption and not self._orbax_preemption and threading.current_thread() is threading.main_thread():
            self._sigterm_handler = self._on_sigterm
            self._prev_sigterm = signal.signal(signal.SIGTERM, self._sigterm_handler)

    # ------------------------------------------------------------------ queries

    @property
    def directory(self) -> epath.Path:
        """The root directory holding one sub-directory per step."""
        return self._mgr.directory

    def all_steps(self) -> list[int]:
        """Complete (finalized) steps, ascending."""
        steps = sorted(int(s) for s in self._mgr.all_steps())
        if self._pending_step is not None and self._pending_step in steps:
            if ocp.step.is_path_finalized(self._step_dir(self._pending_step)):
                self._pending_step = None
            else:
                steps.remove(self._pending_step)
        return steps

    def latest_step(self) -> int | None:
        """Newest complete (finalized) step, or None. It may still prove unreadable at restore."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def metadata(self, step: int) -> dict:
        """The JSON saved with `step`: {'step', 'fingerprint', 'wall_time', 'user', 'format'}."""
        step = int(step)
        if step not in self.all_steps():
            raise CheckpointError(
                f"no complete checkpoint for step {step} in {self.directory}; complete steps: {self.all_steps()}"
            )
        try:
            return dict(self._mgr.restore(step, args=ocp.args.Composite(**{_META: ocp.args.JsonRestore()}))[_META])
        except Exception as e:  # noqa: BLE001 - any read failure means the same thing here
            raise CheckpointError(f"cannot read metadata of {self._step_dir(step)}: {_short(e)}") from e

    def reached_preemption(self, step: int) -> bool:
        """True once SIGTERM arrived (one process) or the preemption sync point is reached (several)."""
        if self._orbax_preemption:
            return bool(self._mgr.reached_preemption(int(step)))
        if self._sigterm and not self._sigterm_logged:
            self._sigterm_logged = True
            logging.warning("SIGTERM received: reporting preemption at step %d", int(step))
        return self._sigterm

    # ------------------------------------------------------------------ save

    def save(
        self,
        step: int,
        state: Any,
        *,
        data_iterator: Any = None,
        metadata: dict | None = None,
        force: bool = False,
    ) -> bool:
        """Starts saving `state` (and the iterator position) at `step`; True if a save was started.

        Skipped unless `step` is a multiple of `save_interval_steps`, `force` is set or a
        preemption was signalled. With `async_save` it returns once the arrays are copied to
        host memory; `wait_until_finished` blocks until the step is on disk.
        """
        step = int(step)
        if self._closed:
            raise CheckpointError(f"save(step={step}) on a closed CheckpointManager for {self.directory}")
        if self.reached_preemption(step):
            force = True
        if step in self._mgr.all_steps():
            logging.info("checkpoint for step %d already exists in %s; not saving again", step, self.directory)
            return False
        if not force and not self._mgr.should_save(step):
            return False
        meta = {
            "format": _META_FORMAT,
            "step": step,
            "fingerprint": self._fingerprint,
            "wall_time": time.time(),
            "user": _to_json(metadata),
        }
        items = {_STATE: ocp.args.StandardSave(state), _META: ocp.args.JsonSave(meta)}
        if data_iterator is not None:
            items[_DATA] = grain.checkpoint.CheckpointSave(data_iterator)
        self._preserve_unfinished(step)
        saved = bool(self._mgr.save(step, args=ocp.args.Composite(**items), force=True))
        if saved:
            self._pending_step = step
        return saved

    def _preserve_unfinished(self, step: int) -> None:
        """Moves aside a leftover unfinished save of `step`, which Orbax would otherwise delete.

        Only the primary process renames; the others wait at Orbax's save-start barrier, which
        comes before anything is written for this step.
        """
        if ocp.multihost.process_index() != 0:
            return
        final = self._step_dir(step)
        for candidate in (final.parent / (final.name + ocp.step.TMP_DIR_SUFFIX), final):
            if candidate.exists() and ocp.step.is_path_temporary(candidate):
                # No barrier: only this process gets here, and Orbax's save-start barrier follows.
                self._move_aside(candidate, step, "incomplete", "unfinished save found before re-saving", barrier=False)

    # ------------------------------------------------------------------ restore

    def restore(
        self, abstract_state: Any, *, step: int | None = None, data_iterator: Any = None
    ) -> tuple[Any, int] | None:
        """Restores (state, step) laid out as `abstract_state`; None if there is no checkpoint.

        `abstract_state` leaves are `jax.ShapeDtypeStruct`s whose `sharding` says where each
        array goes (any mesh or device count). `data_iterator` is put back in place with
        `set_state`. Without `step`, the newest readable step is restored: unreadable newer ones
        are logged and, once an older one restores, renamed to `<step>.corrupt-<time>`; if none is
        readable nothing is renamed and `CheckpointError` is raised. With `step`, an unreadable
        step raises `CheckpointError`. A tree/shape mismatch with `abstract_state` raises at once.
        """
        self.wait_until_finished()  # never read a directory our own save is still writing
        abstract = self._prepare_abstract(abstract_state)
        self._mgr.reload()  # steps may have changed on disk (other runs, manual edits)
        self._warn_unfinished()
        steps = self.all_steps()
        if step is not None:
            step = int(step)
            if step not in steps:
                raise CheckpointError(
                    f"no complete checkpoint for step {step} in {self.directory}; complete steps: {steps}"
                )
            try:
                return self._restore_agreed(step, abstract, data_iterator)
            except _Unreadable as e:
                raise CheckpointError(
                    f"checkpoint {self._step_dir(step)} is unreadable ({e}); restore without `step` to fall "
                    "back to the newest readable one, or remove/rename that directory"
                ) from None
        if not steps:
            return None
        failed: list[tuple[int, str]] = []
        for candidate in reversed(steps):
            try:
                result = self._restore_agreed(candidate, abstract, data_iterator)
            except _Unreadable as e:
                logging.warning(
                    "checkpoint %s is unreadable (%s); trying an older step", self._step_dir(candidate), e
                )
                failed.append((candidate, str(e)))
                continue
            # Only now, with an older step readable through the same abstract_state, is the
            # failure known to be damage to those steps rather than something about the request.
            for bad, reason in failed:
                self._move_aside(self._step_dir(bad), bad, "corrupt", reason)
            if failed:
                self._mgr.reload()
            return result
        reasons = "; ".join(f"step {s}: {r}" for s, r in failed)
        raise CheckpointError(
            f"no readable checkpoint in {self.directory} (steps {steps}); {reasons}. Nothing was renamed, since "
            "the same failure on every step may come from abstract_state rather than the files. If the files are "
            f"damaged, move {self.directory} aside (or point the run at a new directory) to start from scratch."
        )

    def _prepare_abstract(self, abstract_state: Any) -> Any:
        """Turns arrays into ShapeDtypeStructs and checks that every leaf says where it goes."""
        one_device = jax.device_count() == 1

        def leaf(path, x):
            if isinstance(x, jax.Array):
                return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
            if not isinstance(x, jax.ShapeDtypeStruct):
                return x
            if x.sharding is None:
                if not one_device:
                    raise ValueError(
                        f"abstract_state leaf {jax.tree_util.keystr(path)} has no sharding, so there is no way "
                        "to know where to place it; build abstract_state with "
                        "jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(mesh, spec)) for every leaf"
                    )
                x = jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0]))
            # Checked here so that a bad request is never mistaken for a damaged checkpoint.
            try:
                x.sharding.shard_shape(x.shape)
            except Exception as e:  # noqa: BLE001 - jax raises several error types for this
                raise ValueError(
                    f"abstract_state leaf {jax.tree_util.keystr(path)}: sharding {x.sharding} does not fit shape "
                    f"{x.shape} ({_short(e)}); choose a PartitionSpec whose mesh axes divide the dimensions"
                ) from e
            return x

        return jax.tree_util.tree_map_with_path(leaf, abstract_state)

    def _restore_agreed(self, step: int, abstract: Any, data_iterator: Any) -> tuple[Any, int]:
        """`_restore_step` on every process, failing everywhere if it failed anywhere."""
        outcome: tuple[Any, int] | BaseException
        try:
            outcome = self._restore_step(step, abstract, data_iterator)
            code = 0
        except _Unreadable as e:
            outcome, code = e, 1
        except CheckpointError as e:
            outcome, code = e, 2
        if ocp.multihost.process_count() > 1:
            agreed = int(ocp.multihost.global_max([code])[0])
            if agreed != code and code == 0:
                outcome = (
                    _Unreadable("unreadable on another process; see its log")
                    if agreed == 1
                    else CheckpointError(
                        f"restoring {self._step_dir(step)} failed on another process; see its log for the reason"
                    )
                )
            elif agreed == 2 and code == 1:
                outcome = CheckpointError(
                    f"restoring {self._step_dir(step)} failed on another process; see its log for the reason"
                )
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _restore_step(self, step: int, abstract: Any, data_iterator: Any) -> tuple[Any, int]:
        try:
            return self._read_step(step, abstract, data_iterator)
        except (_Unreadable, CheckpointError):
            # Damage can be visible to some processes only (each reads its own shards). The others
            # then wait in Orbax's barrier at the end of a restore; join it so that every process
            # reaches the agreement in `_restore_agreed` instead of deadlocking.
            if ocp.multihost.process_count() > 1 and not self._passed_restore_barrier:
                ocp.multihost.sync_global_processes(ocp.multihost.unique_barrier_key(_ORBAX_RESTORE_BARRIER))
            raise

    def _read_step(self, step: int, abstract: Any, data_iterator: Any) -> tuple[Any, int]:
        self._passed_restore_barrier = False
        step_dir = self._step_dir(step)
        if not step_dir.is_dir():
            raise _Unreadable("the step directory is missing")
        try:
            item_meta = self._mgr.item_metadata(step)
        except Exception as e:  # noqa: BLE001 - damaged metadata files raise anything from JSON to IO errors
            raise _Unreadable(f"cannot read item metadata: {_short(e)}") from e
        for item in (_STATE, _META):
            if not (step_dir / item).is_dir():
                raise _Unreadable(f"item '{item}' is missing")
        state_meta = item_meta[_STATE] if _STATE in item_meta else None
        if state_meta is not None:
            self._check_fits(step_dir, getattr(state_meta, "tree", state_meta), abstract)
        items = {_STATE: ocp.args.StandardRestore(abstract), _META: ocp.args.JsonRestore()}
        foreign_state = None
        if data_iterator is not None:
            source = self._iterator_state_source(step_dir, data_iterator)
            if source == "own":
                items[_DATA] = grain.checkpoint.CheckpointRestore(data_iterator)
            elif source is not None:
                foreign_state = source
        try:
            restored = self._mgr.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # noqa: BLE001 - the layout was checked above, so this is damage
            raise _Unreadable(_short(e)) from e
        self._passed_restore_barrier = True
        meta = restored[_META]
        if not isinstance(meta, dict) or meta.get("step") != step:
            raise _Unreadable(f"meta item does not describe step {step}: {str(meta)[:200]}")
        stored = meta.get("fingerprint")
        if self._fingerprint is not None and stored != self._fingerprint:
            logging.warning(
                "checkpoint %s was written with config fingerprint %s but this run has %s; restoring it anyway. "
                "If the model or data changed on purpose this is expected, otherwise check the config.",
                step_dir,
                stored,
                self._fingerprint,
            )
        if foreign_state is not None:
            try:
                data_iterator.set_state(json.loads(foreign_state.read_text()))
            except (OSError, ValueError) as e:
                raise _Unreadable(f"data iterator state {foreign_state}: {_short(e)}") from e
            logging.warning(
                "the process count changed since step %d was saved; the data iterator resumes from %s, which "
                "is valid for every process count", step, foreign_state.name,
            )
        logging.info("restored step %d from %s", step, step_dir)
        return restored[_STATE], step

    def _check_fits(self, step_dir: epath.Path, saved_tree: Any, abstract: Any) -> None:
        """Raises CheckpointError (not a damage report) when the tree or shapes differ."""
        try:
            wanted = ocp.tree.to_flat_dict(ocp.tree.serialize_tree(abstract, keep_empty_nodes=True))
            saved = ocp.tree.to_flat_dict(saved_tree)
        except Exception as e:  # noqa: BLE001 - unusual trees: leave the check to Orbax's restore
            logging.info("skipping the tree check for %s: %s", step_dir, _short(e))
            return

        def is_value(v):
            # Empty containers (optax EmptyState, empty dicts) hold nothing to restore.
            return v is not None and not (isinstance(v, (dict, list, tuple)) and not v)

        wanted_keys = {k for k, v in wanted.items() if is_value(v)}
        saved_keys = {k for k, v in saved.items() if is_value(v)}
        missing = sorted(_path_str(k) for k in wanted_keys - saved_keys)
        extra = sorted(_path_str(k) for k in saved_keys - wanted_keys)
        shapes = []
        for k in sorted(wanted_keys & saved_keys, key=_path_str):
            w, s = wanted[k], saved[k]
            if isinstance(w, jax.ShapeDtypeStruct) and getattr(s, "shape", None) is not None:
                if tuple(w.shape) != tuple(s.shape):
                    shapes.append(f"{_path_str(k)}: saved {tuple(s.shape)}, requested {tuple(w.shape)}")
        if missing or extra or shapes:
            parts = []
            if missing:
                parts.append(f"not in the checkpoint: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
            if extra:
                parts.append(f"only in the checkpoint: {extra[:8]}{' ...' if len(extra) > 8 else ''}")
            if shapes:
                parts.append(f"shape mismatch: {shapes[:8]}{' ...' if len(shapes) > 8 else ''}")
            raise CheckpointError(
                f"checkpoint {step_dir} does not match abstract_state ({'; '.join(parts)}). Build abstract_state "
                "from the same model/optimizer config that wrote the checkpoint, or use a new directory."
            )

    def _iterator_state_source(self, step_dir: epath.Path, data_iterator: Any) -> str | epath.Path | None:
        """Where to restore the iterator from: "own" (this process's file), another file, or None.

        Iterator states are per process. An iterator whose state is the same on every process
        (`process_count_invariant`, as `data_pipelines.loader.make_iterator` returns) may take any
        process's file, so a job resized to another process count resumes its data exactly.
        """
        data_dir = step_dir / _DATA
        if not data_dir.is_dir():
            logging.warning(
                "checkpoint %s holds no data iterator state; the iterator keeps its current position", step_dir
            )
            return None
        index, count = jax.process_index(), jax.process_count()
        expected = data_dir / f"process_{index}-of-{count}.json"
        if expected.exists():
            return "own"
        others = sorted(data_dir.glob("process_*-of-*.json"))
        if others and getattr(data_iterator, "process_count_invariant", False):
            return others[0]
        if others:
            raise CheckpointError(
                f"the data iterator state in {data_dir} was saved by a different number of processes "
                f"({others[0].name} ...) than this run ({count}), and this iterator's state is per process. "
                "Resume with the same process count, or pass data_iterator=None to restore only the model state."
            )
        raise _Unreadable(f"data iterator file {expected.name} is missing")

    def _warn_unfinished(self) -> None:
        for tmp in ocp.step.all_temporary_paths(self.directory):
            logging.warning(
                "ignoring %s: a save that never finished (process killed mid-save?). It is left in place and "
                "renamed to <step>.incomplete-<time> if that step is saved again.",
                tmp.get(),
            )

    # ------------------------------------------------------------------ housekeeping

    def _step_dir(self, step: int) -> epath.Path:
        return self.directory / str(step)

    def _move_aside(
        self, path: epath.Path, step: int, tag: str, reason: str, *, barrier: bool = True
    ) -> epath.Path | None:
        """Renames `path` to <step>.<tag>-<time> on the primary process; everyone waits for it.

        `barrier=False` when only the primary process calls it (the others are not here).
        """
        target = None
        if ocp.multihost.process_index() == 0:
            target = path.parent / f"{step}.{tag}-{_utc_stamp()}"
            n = 1
            while target.exists():
                target = path.parent / f"{step}.{tag}-{_utc_stamp()}-{n}"
                n += 1
            try:
                path.rename(target)
                logging.warning("moved %s aside to %s (%s)", path, target, reason)
            except Exception as e:  # noqa: BLE001 - some filesystems (GCS) cannot rename directories
                logging.error("could not rename %s to %s (%s); leaving it in place", path, target, _short(e))
                target = None
        if not barrier:
            return target
        self._barrier_count += 1
        ocp.multihost.sync_global_processes(
            ocp.multihost.unique_barrier_key("macl_checkpoint_move_aside", suffix=f"{step}.{self._barrier_count}")
        )
        return target

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        # Only set a flag: this runs between bytecodes of arbitrary main-thread code.
        self._sigterm = True
        prev = self._prev_sigterm
        if callable(prev) and prev not in (signal.SIG_DFL, signal.SIG_IGN):
            prev(signum, frame)

    def wait_until_finished(self) -> None:
        """Blocks until the last async save is on disk; re-raises its error if it failed."""
        self._mgr.wait_until_finished()

    def close(self) -> None:
        """Finishes pending saves and puts the previous SIGTERM handler back. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._mgr.close()
        finally:
            self._restore_sigterm()

    def _restore_sigterm(self) -> None:
        if self._sigterm_handler is None:
            return
        handler, self._sigterm_handler = self._sigterm_handler, None
        if threading.current_thread() is not threading.main_thread():
            logging.warning("CheckpointManager.close() off the main thread: SIGTERM handler left installed")
            return
        if signal.getsignal(signal.SIGTERM) != handler:
            logging.warning("SIGTERM handler was replaced after CheckpointManager installed its own; leaving it")
            return
        signal.signal(signal.SIGTERM, self._prev_sigterm if self._prev_sigterm is not None else signal.SIG_DFL)

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
