"""`--shard i/N` preparation for clusters without Beam, and the `merge` that writes the dataset.

Each worker takes every N-th clip of the sorted task list (starting at i), runs the per-video
function on it and writes one intermediate per shard:

    <data_dir>/_work/<name>/<config>/<version>/shards/shard-<i>-of-<N>.array_record   pickled (clip_id, example)
    <data_dir>/_work/<name>/<config>/<version>/shards/shard-<i>-of-<N>.outcomes.jsonl one Outcome per clip (+ record index)

Both are written under temporary names and renamed when the shard is complete (the outcomes
file last: it is the completion marker), so a killed worker leaves nothing that `merge` would
read; re-running the same `--shard i/N` redoes it. `merge` refuses to start until all N shards
are complete, then builds the TFDS dataset in task order (identical to a plain build) with the
report of every clip.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import time
from collections.abc import Iterator
from typing import Any

from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter

from data_pipelines.real.tasks import Outcome, Task, process_task, speaker_index

_NAME = re.compile(r"^shard-(\d{5})-of-(\d{5})\.outcomes\.jsonl$")


def parse_shard(text: str) -> tuple[int, int]:
    """'3/8' -> (3, 8); 0 <= i < N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
        raise ValueError(f"--shard must be i/N with 0 <= i < N (e.g. 0/4), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def config_name(builder) -> str:
    """The builder's config name ("default" for builders without configs)."""
    return builder.builder_config.name if builder.builder_config is not None else "default"


def work_dir(builder) -> str:
    """Scratch space of a builder's preparation (shard intermediates, Beam outcome files)."""
    root = builder._data_dir_root  # noqa: SLF001 - tfds keeps the user's data_dir here
    return os.path.join(root, "_work", builder.name, config_name(builder), str(builder.version))


def shard_dir(builder) -> str:
    return os.path.join(work_dir(builder), "shards")


def _paths(directory: str, index: int, count: int) -> tuple[str, str]:
    stem = os.path.join(directory, f"shard-{index:05d}-of-{count:05d}")
    return stem + ".array_record", stem + ".outcomes.jsonl"


def prepare_shard(builder, manual_dir: str, index: int, count: int) -> str:
    """Preprocesses tasks[index::count] into one intermediate; returns its outcomes file."""
    manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
    tasks = builder.tasks(manual_dir)
    speakers = speaker_index(tasks)
    directory = shard_dir(builder)
    os.makedirs(directory, exist_ok=True)
    records, outcomes = _paths(directory, index, count)
    if os.path.exists(outcomes):
        print(f"shard {index}/{count} already complete: {outcomes}", flush=True)
        return outcomes
    tmp_records, tmp_outcomes = records + f".tmp-{os.getpid()}", outcomes + f".tmp-{os.getpid()}"
    start = time.perf_counter()
    writer = ArrayRecordWriter(tmp_records, "group_size:1")
    kept = 0
    try:
        with open(tmp_outcomes, "w") as lines:
            for task in tasks[index::count]:
                outcome, example = process_task(task, manual_dir, builder.settings.options, speakers)
                row = outcome.to_json()
                if example is not None:
                    writer.write(pickle.dumps((outcome.clip_id, example), protocol=pickle.HIGHEST_PROTOCOL))
                    row["record"] = kept
                    kept += 1
                lines.write(json.dumps(row, sort_keys=True) + "\n")
        writer.close()
        os.replace(tmp_records, records)
        os.replace(tmp_outcomes, outcomes)  # last: marks the shard complete
    except BaseException:
        for path in (tmp_records, tmp_outcomes):
            if os.path.exists(path):
                os.remove(path)
        raise
    print(f"shard {index}/{count}: {kept} clips kept of {len(tasks[index::count])} in {time.perf_counter() - start:.1f} s",
          flush=True)
    return outcomes


def complete_shards(directory: str) -> tuple[int, list[int]]:
    """(N, indices of complete shards); raises if shards of different N are mixed."""
    counts, done = set(), []
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        match = _NAME.match(name)
        if match:
            done.append(int(match.group(1)))
            counts.add(int(match.group(2)))
    if len(counts) > 1:
        raise ValueError(f"{directory} mixes shards of runs with different N ({sorted(counts)}); delete the stale ones")
    return (counts.pop() if counts else 0), done


def check_complete(directory: str) -> int:
    count, done = complete_shards(directory)
    if not count:
        raise FileNotFoundError(f"no complete shard in {directory}; run `prepare --shard i/N` for i = 0 .. N-1 first")
    missing = sorted(set(range(count)) - set(done))
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {count} shards are not complete in {directory} (missing: {missing[:20]}); "
            f"run `prepare --shard i/{count}` for those i, then merge again"
        )
    return count


def read_intermediates(
    directory: str, tasks: list[Task], outcome_sink: list[Outcome]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yields the kept examples of `tasks` in task order from complete shards; outcomes go to the sink."""
    count = check_complete(directory)
    wanted = {t.clip_id for t in tasks}
    where: dict[str, tuple[int, int]] = {}
    for index in range(count):
        records, outcomes = _paths(directory, index, count)
        with open(outcomes) as f:
            for line in f:
                row = json.loads(line)
                if row["clip_id"] not in wanted:
                    continue
                record = row.pop("record", None)
                outcome = Outcome.from_json(row)
                outcome_sink.append(outcome)
                if outcome.kept:
                    where[outcome.clip_id] = (index, record)
    seen = {o.clip_id for o in outcome_sink}
    if wanted - seen:
        raise ValueError(
            f"{len(wanted - seen)} clips of the raw layout (e.g. {sorted(wanted - seen)[0]}) are in no shard of {directory}: "
            "the raw files changed after the shards ran; delete the shards and run them again"
        )
    readers: dict[int, Any] = {}
    try:
        for task in tasks:
            if task.clip_id not in where:
                continue
            index, record = where[task.clip_id]
            if index not in readers:
                readers[index] = ArrayRecordReader(_paths(directory, index, count)[0])
            clip_id, example = pickle.loads(readers[index].read([record])[0])
            assert clip_id == task.clip_id, (clip_id, task.clip_id)
            yield clip_id, example
    finally:
        for reader in readers.values():
            reader.close()
