"""`macl-jax pipeline --quick`: data, three stages, report, demo videos; a rerun resumes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from macl_jax.media.video_io import read_video

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_pipeline_writes_the_report_and_demo_videos(quick_pipeline):
    workdir, _ = quick_pipeline
    report = json.loads((workdir / "report.json").read_text())
    keys = {row["key"] for row in report["metrics"]}
    for key in ("test_sync_top1", "test_identity_top1", "test_eer", "test_m_lmd", "test_f_lmd", "test_rd", "heldout_pred_psnr",
                "heldout_pred_ssim_gaussian", "image_quality_lpips", "e2e_pred_model_psnr", "e2e_true_model_lpips"):
        assert key in keys, key
    for row in report["metrics"]:
        assert np.isfinite(row["value"])
    markdown = (workdir / "report.md").read_text()
    assert "| mdn | M-LMD" in markdown and "videos/test_clip00.mp4" in markdown
    assert "ground-truth landmarks" in markdown and "landmarks from speech (MDN)" in markdown
    for plot in report["plots"]:
        assert plot.endswith(".png") and (workdir / "plots").joinpath(plot.split("/")[-1]).stat().st_size > 10_000
    assert any("mdn_tracks" in p for p in report["plots"])

    assert len(report["videos"]) == 2
    for path in report["videos"]:
        video = read_video(path)
        assert video.fps == 25 and len(video.frames) == 60  # the MDN's 60 targets of a 64-frame clip
        assert video.frames.shape[2] == 4 * (video.frames.shape[1] - 14)  # four square panels under a 14 px label strip
        assert video.audio is not None and abs(len(video.audio) - 60 * 640) <= 640


def _figures(workdir: Path) -> dict:
    return {(row["key"], row.get("baseline_name")): row for row in json.loads((workdir / "report.json").read_text())["metrics"]}


def test_the_quick_pipeline_learns_from_the_speech(quick_pipeline):
    """Held-out figures that an untrained or speech-blind system does not reach (see docs/testing.md)."""
    workdir, _ = quick_pipeline
    rows = _figures(workdir)
    # The SFE's bar (held-out sync above chance) is asserted on a longer SFE run:
    # tests/train/test_sfe.py::test_sfe_stage_learns_sync_on_held_out_speakers.
    # The mean mouth is the best prediction that ignores the speech.
    mouth = rows[("test_m_lmd", "mean mouth")]
    assert mouth["beats_baseline"], mouth
    # The renderer, driven by ground-truth landmarks, beats copying the reference frame on the
    # held-out speakers (an untrained or 600-step ngf-8 renderer does not: docs/testing.md).
    for key in ("heldout_pred_psnr", "heldout_pred_ssim_gaussian"):
        row = rows[(key, "copy the reference")]
        assert row["value"] > row["baseline"], row
    # End to end, the reference frame (the renderers' input) is not scored: copying it would be
    # exact and the mean PSNR infinite.
    e2e = rows[("e2e_pred_model_psnr", "copy the reference")]
    assert np.isfinite(e2e["baseline"]) and e2e["baseline"] > 15.0, e2e


def test_rerunning_the_pipeline_keeps_the_finished_stages(quick_pipeline, main_env):
    workdir, _ = quick_pipeline
    before = {s: (workdir / s / f"{s}_summary.json").stat().st_mtime_ns for s in ("sfe", "mdn", "renderer")}
    checkpoints = sorted(p.name for p in (workdir / "mdn" / "checkpoints").iterdir())
    proc = subprocess.run([sys.executable, "-m", "macl_jax.main", "pipeline", "--quick", "--workdir", str(workdir),
                           f"--config.data.dir={json.loads((workdir / 'config.json').read_text())['data']['dir']}"],
                          cwd=REPO_ROOT, env=main_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stderr.count("already trained") == 3
    after = {s: (workdir / s / f"{s}_summary.json").stat().st_mtime_ns for s in ("sfe", "mdn", "renderer")}
    assert after == before
    assert sorted(p.name for p in (workdir / "mdn" / "checkpoints").iterdir()) == checkpoints
    assert json.loads(proc.stdout)["report"].endswith("report.md")


def test_a_bad_stage_override_is_refused_before_anything_runs(run_main, tmp_path):
    proc = run_main(["pipeline", "--quick", "--workdir", str(tmp_path), "--config.data.dir=" + str(tmp_path / "data"),
                     "--config.stages.mdn.overrides=('train.num_stepz=5',)"], check=False, timeout=120)
    assert proc.returncode == 2
    assert "config.stages.mdn" in proc.stderr and "train.num_steps" in proc.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "sfe").exists()


@pytest.mark.timeout(1800)
def test_two_runs_from_scratch_give_the_same_report(run_main, synthtalk_tiny_root, tmp_path):
    """Same config, same data, fresh workdirs: every reported figure is equal, bit for bit.

    The stages run their `tiny` presets' own few steps (no pipeline overrides), which is enough to
    exercise every source of randomness: initialisation, data order, dropout, augmentation, the MDN's
    sampling and the evaluators' draws."""
    short = [f"--config.stages.{stage}.overrides=()" for stage in ("sfe", "mdn", "renderer")]
    values = []
    for name in ("first", "second"):
        workdir = tmp_path / name
        run_main(["pipeline", "--quick", "--workdir", str(workdir), f"--config.data.dir={synthtalk_tiny_root}",
                  "--config.report.demo_clips=0", "--config.report.e2e_clips=1", *short], timeout=900)
        values.append({(row["key"], row.get("baseline_name")): (row["value"], row.get("baseline"))
                       for row in json.loads((workdir / "report.json").read_text())["metrics"]})
    assert len(values[0]) >= 15
    assert values[0] == values[1]
