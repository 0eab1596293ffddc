"""`macl-jax pipeline --quick`: data, three stages, report, demo videos; a rerun resumes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from macl_jax.media.video_io import read_video

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_pipeline_writes_the_report_and_demo_videos(quick_pipeline):
    workdir, _ = quick_pipeline
    report = json.loads((workdir / "report.json").read_text())
    keys = {row["key"] for row in report["metrics"]}
    for key in ("test_sync_top1", "test_eer", "test_m_lmd", "test_f_lmd", "test_rd", "heldout_pred_psnr",
                "heldout_pred_ssim_gaussian", "image_quality_lpips"):
        assert key in keys, key
    for row in report["metrics"]:
        assert np.isfinite(row["value"])
    by_key = {row["key"]: row for row in report["metrics"]}
    # Even the quick MDN moves the mouth with the speech better than a still reference face.
    assert by_key["test_m_lmd"]["beats_baseline"], by_key["test_m_lmd"]
    markdown = (workdir / "report.md").read_text()
    assert "| mdn | M-LMD" in markdown and "videos/test_clip00.mp4" in markdown
    for plot in report["plots"]:
        assert plot.endswith(".png") and (workdir / "plots").joinpath(plot.split("/")[-1]).stat().st_size > 10_000
    assert any("mdn_tracks" in p for p in report["plots"])

    assert len(report["videos"]) == 2
    for path in report["videos"]:
        video = read_video(path)
        assert video.fps == 25 and len(video.frames) == 60  # the MDN's 60 targets of a 64-frame clip
        assert video.frames.shape[2] == 4 * (video.frames.shape[1] - 14)  # four square panels under a 14 px label strip
        assert video.audio is not None and abs(len(video.audio) - 60 * 640) <= 640


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
