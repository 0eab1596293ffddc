"""`macl-jax import --from makeittalk-renderer`: a small MakeItTalk generator saved by PyTorch
(tests/assets/importers/makeittalk/make_golden.py) computes here what it computed there."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from macl_jax.checkpoint.foreign import ForeignCheckpointError
from macl_jax.config import freeze, load_config, recorded_config
from macl_jax.importers import makeittalk
from macl_jax.importers.common import CheckpointImportError, Importer, import_run
from macl_jax.train import renderer
from macl_jax.train.restore import restore_on_one_device

REPO_ROOT = Path(__file__).resolve().parents[2]
ASSETS = REPO_ROOT / "tests" / "assets" / "importers" / "makeittalk"
SMALL = ["model.num_downs=6", "model.ngf=2"]  # the golden model's sizes
OTHERS = {"makeittalk-renderer": makeittalk.IMPORTER}


def _inputs():
    # As make_golden.inputs(): NCHW, BGR in [0, 1]; here NHWC.
    x = np.random.default_rng(0).uniform(size=(1, 6, 64, 64)).astype(np.float32)
    train_x = np.random.default_rng(1).uniform(size=(4, 6, 128, 128)).astype(np.float32)
    return x.transpose(0, 2, 3, 1), train_x.transpose(0, 2, 3, 1)


def _import(workdir, name="checkpoint.pth", spec="configs/renderer.py:tiny", overrides=SMALL):
    return import_run(makeittalk.IMPORTER, OTHERS, ASSETS / name, workdir, spec, list(overrides))


def _restore(workdir):
    config = freeze(recorded_config(workdir, "final", stage="renderer"))
    task = renderer.build_task(config)
    state, step = restore_on_one_device(task, config, workdir)
    return task, state, step


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("makeittalk") / "run"
    summary = _import(workdir)
    return workdir, summary


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def test_every_tensor_is_imported_and_the_run_is_a_renderer_run(imported):
    workdir, summary = imported
    assert summary["tensors_ignored"] == [], summary["tensors_ignored"]
    # 69,444 parameters in 56 convolutions and 53 batch norms (4 tensors each, + num_batches_tracked).
    assert summary["tensors_imported"] == 56 + 53 * 5
    assert json.loads((workdir / "config.json").read_text())["model"]["io"] == "makeittalk"
    _, state, step = _restore(workdir)
    assert step == 0
    assert sum(x.size for x in jax.tree.leaves(state.params["g"])) == 69_444


def test_eval_outputs_equal_pytorchs(imported):
    task, state, _ = _restore(imported[0])
    golden = np.load(ASSETS / "golden.npz")
    generator = task.generator(state)
    x, _ = _inputs()
    raw = generator.net(jnp.asarray(x), False)  # the network alone: BGR [0, 1] in, no tanh
    assert _rel(raw, golden["y"].transpose(0, 2, 3, 1)) < 1e-4
    # Through the adapter, as the renderer stage calls it: RGB in [-1, 1] in and out.
    signed_rgb = 2 * x[..., [2, 1, 0, 5, 4, 3]] - 1
    want = 2 * np.tanh(golden["y"].transpose(0, 2, 3, 1))[..., ::-1] - 1
    assert _rel(generator(jnp.asarray(signed_rgb), train=False), want) < 1e-4


def test_one_training_forward_updates_the_running_statistics_as_pytorch(imported):
    task, state, _ = _restore(imported[0])
    golden = np.load(ASSETS / "golden.npz")
    generator = task.generator(state)
    _, train_x = _inputs()
    generator.net(jnp.asarray(train_x), True)
    flat = {"/".join(map(str, p)): v.get_value() for p, v in nnx.state(generator, nnx.BatchStat).flat_state()}
    mapping = makeittalk.resunet_mapping(6)
    checked, worst = 0, (0.0, "")
    for flax_path, (torch_name, _) in mapping.items():
        for ours, theirs in (("mean", "running_mean"), ("var", "running_var")):
            if torch_name.endswith(theirs):
                want = golden[torch_name[: -len(theirs)] + ours]
                worst = max(worst, (_rel(flat[flax_path], want), flax_path))
                checked += 1
    assert checked == 2 * 53
    # Relative to each statistic's largest entry, as for the outputs. Flax's biased update would be
    # 0.65% off at the innermost level (the batch term, 10% of the update, n / (n - 1) = 16 / 15 times too small).
    assert worst[0] < 1e-5, worst


def test_dataparallel_prefix_gives_the_same_run(imported, tmp_path):
    _import(tmp_path / "dp", "checkpoint_dataparallel.pth")
    _, a, _ = _restore(imported[0])
    _, b, _ = _restore(tmp_path / "dp")
    for x, y in zip(jax.tree.leaves((a.params, a.model_state)), jax.tree.leaves((b.params, b.model_state))):
        np.testing.assert_array_equal(x, y)


def test_wrong_model_legacy_file_and_taken_workdir_are_refused(imported, tmp_path):
    sfe_like = Importer("macl-sfe", "sfe", "configs/sfe.py:tiny", (), "state_dict", "audio_encoder.x", None, None, "MACL SFE")
    with pytest.raises(CheckpointImportError, match="--from makeittalk-renderer"):
        import_run(sfe_like, {**OTHERS, "macl-sfe": sfe_like}, ASSETS / "checkpoint.pth", tmp_path / "a", "configs/sfe.py:tiny")
    assert not (tmp_path / "a").exists()
    with pytest.raises(ForeignCheckpointError, match="legacy"):
        import_run(makeittalk.IMPORTER, OTHERS, REPO_ROOT / "tests/assets/torch/legacy.pt", tmp_path / "b", "configs/renderer.py:tiny", SMALL)
    assert not (tmp_path / "b").exists()
    before = sorted(p.relative_to(imported[0]) for p in imported[0].rglob("*"))
    with pytest.raises(CheckpointImportError, match="already holds a run"):
        _import(imported[0])
    assert sorted(p.relative_to(imported[0]) for p in imported[0].rglob("*")) == before
    # Sizes that do not fit the weights: every mismatch named, nothing written.
    with pytest.raises(ForeignCheckpointError, match="shape"):
        _import(tmp_path / "c", overrides=["model.num_downs=6", "model.ngf=4"])
    assert not (tmp_path / "c").exists()


def test_cli_refuses_a_conflicting_io_override(tmp_path, main_env):
    proc = subprocess.run(
        [sys.executable, "-m", "macl_jax.main", "import", "--from", "makeittalk-renderer", str(ASSETS / "checkpoint.pth"),
         "--workdir", str(tmp_path / "run"), "--config", "configs/renderer.py:tiny", "--config.model.io=signed_rgb"],
        cwd=REPO_ROOT, env=main_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "model.io=makeittalk" in proc.stderr and not (tmp_path / "run").exists()


def test_eval_and_fine_tuning_take_the_imported_run(imported, synthtalk_tiny_root, tmp_path):
    import shutil

    workdir = tmp_path / "finetune"
    shutil.copytree(imported[0], workdir)
    config = freeze(load_config("configs/renderer.py:tiny", [
        *SMALL, "model.io=makeittalk", f"data.dir={synthtalk_tiny_root}", "train.num_steps=2", "train.eval_every=2",
        "checkpoint.every_steps=2", "checkpoint.async_save=false",
    ]))
    # `macl-jax eval` on the imported run: the held-out evaluators restore step 0.
    from macl_jax import evaluate

    summary = evaluate.run(config, workdir)
    assert summary["step"] == 0 and np.isfinite(summary["results"]["heldout"]["pred_psnr"]), summary
    renderer.run(config, workdir)
    _, start, _ = _restore(imported[0])
    task, tuned, step = _restore(workdir)
    assert step == 2
    moved = [float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
             for a, b in zip(jax.tree.leaves(start.params), jax.tree.leaves(tuned.params))]
    # Trained from the imported weights (Adam moves every weight by about lr per step), not re-initialised.
    assert 0 < max(moved) < 0.05


def test_generate_animates_a_real_photo_with_an_imported_renderer(quick_pipeline, tmp_path, main_env):
    """The released renderer's 256 px convention (configs/renderer.py:full), at the golden model's width."""
    from PIL import Image
    from skimage import data

    from macl_jax.media.samples import arctic_speech_file
    from macl_jax.media.video_io import read_audio, read_video

    run = tmp_path / "makeittalk"
    _import(run, spec="configs/renderer.py:full")
    photo = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    out = tmp_path / "astronaut.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "macl_jax.main", "generate", "--checkpoint", str(quick_pipeline[0]), "--image", str(photo),
         "--audio", str(arctic_speech_file()), "--out", str(out), "--renderer", "model", "--renderer-checkpoint", str(run)],
        cwd=REPO_ROOT, env=main_env(), capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["renderer"] == "model"
    video, source = read_video(out), read_audio(arctic_speech_file(), 16000)
    assert video.frames.shape[1:] == (256, 256, 3) and video.fps == 25
    assert abs(len(video.frames) - len(source) / 640) <= 1  # one frame per 40 ms of the speech
    # Random weights draw no face, but the frames are the network's: they change with the landmarks.
    assert np.ptp(video.frames.astype(np.float32).mean(axis=(1, 2, 3))) > 0
