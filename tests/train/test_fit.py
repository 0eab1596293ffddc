"""The generic loop: restore onto other meshes, corrupt checkpoints, the NaN guard, logging."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from data_pipelines.loader import global_batch_dataset, make_iterator
from data_pipelines.smoke_regression import make_splits
from macl_jax.config import freeze, load_config
from macl_jax.parallel import make_mesh
from macl_jax.train.logging import read_metrics
from macl_jax.train.loop import NonFiniteError, fit
from macl_jax.train.smoke import build_task


def _fit(workdir, overrides, devices, mesh_axes):
    config = freeze(load_config("configs/smoke.py:tiny", ["checkpoint.async_save=false", *overrides]))
    dc = config.dataset
    train, _ = make_splits(dc.num_train, dc.num_test, dc.input_dim, dc.output_dim, dc.noise, dc.seed)
    dataset = global_batch_dataset(
        train, global_batch_size=config.train.global_batch_size, process_index=0, process_count=1, seed=config.seed
    )
    return fit(
        build_task(config),
        config=config,
        workdir=workdir,
        train_iter=make_iterator(dataset),
        mesh=make_mesh(mesh_axes, devices=devices),
    )


def test_restore_onto_other_meshes_and_continue(tmp_path):
    reference = _fit(tmp_path / "ref", ["train.num_steps=30", "checkpoint.every_steps=10"], jax.devices(), {"data": -1})
    ref_losses = read_metrics(tmp_path / "ref" / "metrics.jsonl")

    work = tmp_path / "moved"
    _fit(work, ["train.num_steps=10", "checkpoint.every_steps=10"], jax.devices(), {"data": -1})
    on_4x2 = _fit(work, ["train.num_steps=20", "checkpoint.every_steps=10"], jax.devices(), {"data": 4, "fsdp": 2})
    assert on_4x2.step == 20
    on_1 = _fit(work, ["train.num_steps=30", "checkpoint.every_steps=10"], jax.devices()[:1], {"data": -1})
    assert on_1.step == 30
    losses = read_metrics(work / "metrics.jsonl")
    for step in range(1, 31):
        assert losses[step]["loss"] == pytest.approx(ref_losses[step]["loss"], rel=1e-4, abs=1e-6), step
    for a, b in zip(jax.tree.leaves(reference.state.params), jax.tree.leaves(on_1.state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-5)


def _corrupt(step_dir: Path) -> None:
    files = sorted(p for p in step_dir.rglob("*") if p.is_file() and p.stat().st_size > 0)
    assert files, step_dir
    for path in files:
        if "state" in path.parts:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def test_corrupt_latest_checkpoint_falls_back(tmp_path):
    _fit(tmp_path, ["train.num_steps=20", "checkpoint.every_steps=10"], jax.devices(), {"data": -1})
    ckpt_dir = tmp_path / "checkpoints"
    _corrupt(ckpt_dir / "20")
    result = _fit(tmp_path, ["train.num_steps=25", "checkpoint.every_steps=10"], jax.devices(), {"data": -1})
    assert result.step == 25
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"event"' in line]
    assert [e["step"] for e in events if e["event"] == "resumed"] == [10]
    assert any(p.name.startswith("20.corrupt") or "corrupt" in p.name for p in ckpt_dir.iterdir())


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    with pytest.raises(NonFiniteError, match="Last good checkpoint: step") as info:
        _fit(
            tmp_path,
            ["train.num_steps=30", "checkpoint.every_steps=1", "train.learning_rate=1e30"],
            jax.devices(),
            {"data": -1},
        )
    assert "Lower the learning rate" in str(info.value)
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps, "the finite steps before the blow-up were checkpointed"
    failed_at = int(str(info.value).split("at step ")[1].split(";")[0])
    assert max(steps) < failed_at


def test_logging_writes_jsonl_and_tensorboard(tmp_path):
    _fit(tmp_path, ["train.num_steps=6", "checkpoint.every_steps=3", "train.eval_every=3"], jax.devices(), {"data": -1})
    metrics = read_metrics(tmp_path / "metrics.jsonl")
    assert sorted(metrics) == list(range(1, 7))
    for key in ("loss", "grad_norm", "perf/step_time_s", "perf/data_wait_s", "perf/checkpoint_s"):
        assert key in metrics[3], key
    assert np.isfinite(metrics[6]["loss"])
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_profiler_trace_for_requested_steps(tmp_path):
    _fit(
        tmp_path,
        ["train.num_steps=6", "checkpoint.every_steps=6", "runtime.profile.start_step=2", "runtime.profile.num_steps=2"],
        jax.devices(),
        {"data": -1},
    )
    traces = list((tmp_path / "profile").rglob("*.xplane.pb"))
    assert traces and traces[0].stat().st_size > 0


def test_profiler_window_past_the_end_is_still_written_and_resumable(tmp_path):
    overrides = ["checkpoint.every_steps=4", "runtime.profile.start_step=2", "runtime.profile.num_steps=100"]
    _fit(tmp_path, ["train.num_steps=4", *overrides], jax.devices(), {"data": -1})
    assert list((tmp_path / "profile").rglob("*.xplane.pb"))
    result = _fit(tmp_path, ["train.num_steps=8", *overrides], jax.devices(), {"data": -1})  # resumes at 4
    assert result.step == 8


def test_indivisible_global_batch_names_the_key(tmp_path):
    with pytest.raises(ValueError, match="global_batch_size"):
        _fit(tmp_path, ["train.global_batch_size=12"], jax.devices(), {"data": -1})


def test_bfloat16_compute_keeps_float32_parameters(tmp_path):
    result = _fit(tmp_path, ["train.num_steps=20", "runtime.compute_dtype=bfloat16"], jax.devices(), {"data": -1})
    assert {np.asarray(x).dtype for x in jax.tree.leaves(result.state.params)} == {np.dtype("float32")}
    losses = read_metrics(tmp_path / "metrics.jsonl")
    assert np.isfinite(losses[20]["loss"]) and losses[20]["loss"] < losses[1]["loss"]
    model = build_task(freeze(load_config("configs/smoke.py:tiny", ["runtime.compute_dtype=bfloat16"]))).model(result.state)
    hidden = model.layers[0](np.ones((2, 16), np.float32))
    assert hidden.dtype == np.dtype("bfloat16")  # activations really are computed in bf16
