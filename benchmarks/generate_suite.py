"""Generation: `macl-jax generate` on long audio (peak memory against length) and end-to-end frames/s.

1. `macl-jax generate --renderer warp` (256 px) from the astronaut photo and speech of 0.5, 2 and
   10 minutes (the CMU ARCTIC recording shipped in `macl_jax/media/assets`, repeated), each in its own process: wall time, frames/s, and the process's peak resident memory.
   The MDN is a `configs/mdn.py:cpu` model trained for 2 steps (the figures do not depend on the
   weights). Memory should not grow with the audio's length: the audio is decoded to disk, the
   MDN runs on fixed chunks and frames are encoded as they are made.
2. In process, at the reference sizes (MDN `full`, ResUnet `full`, random weights): one 250-frame
   MDN chunk, then the renderer at 256 px on its frames, 1 frame per call and 16 per call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import soundfile as sf

from benchmarks.harness import Row, median_time
from benchmarks.mdn_suite import _batch
from macl_jax.config import freeze, load_config
from macl_jax.media.draw_jax import landmark_raster_jax
from macl_jax.media.samples import arctic_speech_file
from macl_jax.media.video_io import read_audio
from macl_jax.parallel import make_mesh
from macl_jax.train import mdn, renderer
from macl_jax.train.loop import create_state

REPO = Path(__file__).resolve().parent.parent
MINUTES = (0.5, 2.0, 10.0)
CHUNK = 250


def _speech(seconds: float, path: Path) -> Path:
    """A WAV of `seconds` of real speech: the shipped CMU ARCTIC clip, repeated."""
    clip = read_audio(arctic_speech_file(), 16000)
    audio = np.tile(clip, int(np.ceil(seconds * 16000 / len(clip))))[: int(seconds * 16000)]
    sf.write(path, audio, 16000, subtype="PCM_16")
    return path


def _tiny_mdn(workdir: Path) -> Path:
    cmd = [sys.executable, "-m", "macl_jax.main", "mdn", "--config", "configs/mdn.py:cpu", "--workdir", str(workdir),
           "--config.data.variant=voxceleb_like_tiny", "--config.train.num_steps=2", "--config.train.eval_every=0",
           "--config.checkpoint.every_steps=2", "--config.eval.plot_clips=0", "--config.train.global_batch_size=4"]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
    return workdir


def _generate(checkpoint: Path, audio: Path, out: Path, image: Path) -> tuple[dict, float, float]:
    """(summary, wall seconds, peak RSS MiB) of one `macl-jax generate` process."""
    script = (
        "import resource, runpy, sys\n"
        "sys.argv = ['macl-jax'] + sys.argv[1:]\n"
        "try:\n"
        "    from macl_jax.main import run; run()\n"
        "finally:\n"
        "    print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    )
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", script, "generate", "--checkpoint", str(checkpoint), "--image", str(image), "--audio", str(audio),
         "--out", str(out), "--renderer", "warp", "--progress", "off"],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    peak = [line for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_KB")][-1]
    return json.loads(proc.stdout), wall, int(peak.split()[1]) / 1024


def long_audio_rows() -> list[Row]:
    from PIL import Image
    from skimage import data  # deferred: scikit-image (the astronaut photo) is slow to import

    rows = []
    with tempfile.TemporaryDirectory(prefix="macl-bench-gen-") as tmp:
        tmp = Path(tmp)
        image = tmp / "astronaut.png"
        Image.fromarray(data.astronaut()).save(image)
        checkpoint = _tiny_mdn(tmp / "mdn")
        peaks = []
        for minutes in MINUTES:
            audio = _speech(minutes * 60, tmp / f"speech_{minutes}.wav")
            summary, wall, peak = _generate(checkpoint, audio, tmp / "out.mp4", image)
            peaks.append(peak)
            label = f"{minutes:g} min of speech"
            rows.append(Row(f"generate --renderer warp 256 px, {label}: peak memory", peak, "MiB",
                            peaks[0] if minutes != MINUTES[0] else None, f"{MINUTES[0]:g} min" if minutes != MINUTES[0] else "",
                            notes=f"{summary['frames']} frames; whole process (JAX, dlib, encoder)"))
            rows.append(Row(f"generate --renderer warp 256 px, {label}: throughput", summary["frames"] / wall, "frames/s",
                            notes=f"{wall:.1f} s wall incl. start-up, face detection and H.264 + AAC encoding"))
    return rows


def end_to_end_rows(repeats: int = 3) -> list[Row]:
    mesh = make_mesh({"data": 1}, devices=jax.devices()[:1])
    mdn_config = freeze(load_config("configs/mdn.py:full", ["train.global_batch_size=1"]))
    mdn_task = mdn.build_task(mdn_config)
    mdn_state, _, _ = create_state(mdn_task, jax.random.key(0), mesh)
    batch = {k: jnp.asarray(v) for k, v in _batch(1).items()}
    batch = {k: (jnp.repeat(v, CHUNK // 60 + 1, axis=1)[:, :CHUNK] if v.ndim >= 2 and v.shape[1] == 60 else v) for k, v in batch.items()}
    predict = jax.jit(lambda s, b: mdn.predict(mdn_task, s, b, mdn_config)["pixels"])
    mdn_s = median_time(lambda: predict(mdn_state, batch).block_until_ready(), warmup=1, repeats=repeats)
    r_config = freeze(load_config("configs/renderer.py:full", ["train.global_batch_size=1"]))
    r_task = renderer.build_task(r_config)
    r_state, _, _ = create_state(r_task, jax.random.key(1), mesh)
    reference = jnp.zeros((256, 256, 3), jnp.uint8)
    render = jax.jit(lambda s, lm: r_task.predict(s, {"raster": landmark_raster_jax(lm, 256), "reference": jnp.broadcast_to(reference, (len(lm), 256, 256, 3))}))
    landmarks = predict(mdn_state, batch)[0]
    rows = [Row("MDN full, one 250-frame chunk", CHUNK / mdn_s, "frames/s", notes=f"{mdn_s * 1000:.0f} ms per chunk")]
    for per_call in (1, 16):
        lm = landmarks[:per_call]
        seconds = median_time(lambda: render(r_state, lm).block_until_ready(), warmup=1, repeats=repeats)
        frame_s = seconds / per_call + mdn_s / CHUNK
        rows.append(Row(f"end to end 256 px (MDN full + ResUnet full), {per_call} frame(s) per renderer call", 1 / frame_s, "frames/s",
                        notes=f"{frame_s * 1000:.0f} ms per frame; audio features and encoding excluded"))
    return rows


def run() -> list[Row]:
    return end_to_end_rows() + long_audio_rows()
