"""`macl-jax generate` memory does not grow with the audio's length.

The same command runs on 20 s and on 80 s of speech, each in its own process, and the process's
resident memory is sampled from outside every 50 ms against the frames written so far (the
progress bar's count). Peak RSS cannot show this: start-up (imports, compilation, face detection)
sets the peak, and growth during the frame loop stays under it until it has grown a lot. Sampled
against frames, the loop is a low sawtooth: a level while a chunk's frames are encoded, and a tooth
while the next chunk is predicted and rendered (all its frames at once); both stay the same from
the first chunks to the last, and the same for both lengths.
"""

import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from scipy import stats

from benchmarks.memory import RssTrace, run_sampled

REPO_ROOT = Path(__file__).resolve().parents[2]

SHORT_SECONDS, LONG_SECONDS = 20, 80  # 500 and 2000 frames at 25 fps
# Short chunks (64 new frames each, 4 renderer batches): a chunk's rendered frames (12 MiB at
# 256 px) are small against the margin, and the long run's 32 chunks would show a leak per chunk
# too. With the default 250-frame chunks the tooth is ~130 MiB (three chunks' worth of frames at
# its top) and the last, shorter chunk of a run sits lower, so the two lengths would not compare
# like for like.
CHUNKING = ["--chunk-frames", "72", "--overlap", "8"]
# The loop is at its working level once the first chunk has been rendered and encoded and x264's
# lookahead (40 frames at preset medium) is full; measured flat from frame 64.
WARM_FRAMES = 100
# The long run's level (median RSS over the last quarter of its frames) may exceed the short run's
# by at most LEVEL_MARGIN_MIB, and RSS may rise at most RISE_MARGIN_MIB across the long run's loop
# (Theil-Sen fit against frames written, which a tooth does not tilt). Measured on 2 busy cores:
# the level of two runs of the same command differs by up to ~20 MiB (what compilation leaves
# resident) and the 80 s run sits within the spread of the 20 s runs, while the fitted rise is
# under 1 MiB and measures a leak to within a few per cent (192 KiB per frame for kept 256 px
# frames). The last quarters are ~1300 frames apart, so the level margin is ~50 KB per frame; the
# rise margin over 1900 frames is ~9 KB per frame, under one 64 px frame (12 KB).
LEVEL_MARGIN_MIB = 64.0
RISE_MARGIN_MIB = 16.0
# glibc raises its mmap threshold each time a large block is freed, so large buffers drift onto the
# heap, where freed memory stays resident, and each thread may get its own arena: with the defaults
# RSS creeps up ~30 MiB over the first ~1500 frames before it stays flat (6000 frames measured), and
# two runs differ by ~80 MiB in what compilation leaves resident. A fixed threshold (glibc's initial
# 128 KiB) returns every large buffer, a frame included, to the system when it is freed, and two
# arenas keep the level reproducible, so RSS follows the memory the program holds; anything it
# keeps is resident either way.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072", "MALLOC_ARENA_MAX": "2"}


def _speech(seconds: float, path: Path) -> Path:
    """SynthTalk speech (the data set's source-filter voice): a 20 s utterance repeated to `seconds`."""
    from data_pipelines.synthtalk import speech

    rng = np.random.default_rng(7)
    voice = speech.sample_voice(rng)
    utterance = speech.synthesize(speech.sample_utterance(rng, SHORT_SECONDS, voice), voice, rng).waveform
    audio = np.tile(utterance, int(np.ceil(seconds / SHORT_SECONDS)))[: int(seconds * 16000)]
    sf.write(path, audio, 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """(photo, short speech, long speech)."""
    from skimage import data

    root = tmp_path_factory.mktemp("memory_inputs")
    photo = root / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    return photo, _speech(SHORT_SECONDS, root / "short.wav"), _speech(LONG_SECONDS, root / "long.wav")


def _figures(trace: RssTrace, frames: int, warm_frames: int) -> dict[str, float]:
    # The bar's last count is drawn once the frames are done: samples at it are the encoder's
    # flush and the exit, not the loop.
    loop = (trace.progress >= warm_frames) & (trace.progress < trace.progress.max())
    last_quarter = loop & (trace.progress >= frames * 3 // 4)
    assert last_quarter.sum() >= 10, f"{frames} frames: only {last_quarter.sum()} samples in the last quarter of the loop"
    slope = stats.theilslopes(trace.rss_mib[loop], trace.progress[loop])[0]  # MiB per frame
    return {
        "frames": frames,
        "wall_s": round(float(trace.seconds[-1]), 1),
        "start_up_peak_mib": round(float(trace.rss_mib[trace.progress <= 0].max()), 1),
        "level_mib": round(float(np.median(trace.rss_mib[last_quarter])), 1),
        "last_quarter_peak_mib": round(float(trace.rss_mib[last_quarter].max()), 1),
        "slope_kib_per_frame": round(float(slope * 1024), 2),
        "rise_mib": round(float(slope * (frames - warm_frames)), 1),
    }


def assert_memory_flat(
    cmd_for_audio: Callable[[Path], list[str]],
    short_audio: Path,
    long_audio: Path,
    *,
    env: dict[str, str] | None = None,
    warm_frames: int = WARM_FRAMES,
    level_margin_mib: float = LEVEL_MARGIN_MIB,
    rise_margin_mib: float = RISE_MARGIN_MIB,
) -> dict[str, dict[str, float]]:
    """Runs `cmd_for_audio(audio)` (a `macl-jax generate` command with `--progress on`) on both
    audio files, each in a fresh process, and fails if resident memory grows with the length: the
    long run's level (median over the last quarter of its frames) more than `level_margin_mib`
    above the short run's, or a rise of more than `rise_margin_mib` fitted across the long run's
    frames. Returns the figures of both runs."""
    figures: dict = {}
    for name, audio in (("short", short_audio), ("long", long_audio)):
        trace = run_sampled(cmd_for_audio(audio), cwd=REPO_ROOT, env={**(env or {}), **MALLOC_ENV}, timeout=600)
        assert trace.returncode == 0, trace.stderr[-4000:]
        frames = int(json.loads(trace.stdout)["frames"])
        assert trace.progress.max() > warm_frames, "no frame count on stderr: pass --progress on"
        figures[name] = _figures(trace, frames, warm_frames)
    short, long = figures["short"], figures["long"]
    assert long["frames"] >= 3 * short["frames"]
    growth = long["level_mib"] - short["level_mib"]
    assert growth <= level_margin_mib, f"{long['frames']} frames sit {growth:.0f} MiB above {short['frames']} frames: {figures}"
    assert long["rise_mib"] <= rise_margin_mib, f"RSS rises {long['rise_mib']:.0f} MiB across {long['frames']} frames: {figures}"
    return figures


# Generation options under test; a later renderer or motion source is one more entry. Each costs
# ~80 s on 2 cores (two processes, ~20 s of start-up each), so only `warp` runs in CI; `model` (the
# quick pipeline's 64 px renderer) and `rhm` (the session's tiny `rhm` run, 32 px) pass as well and
# run with the slow tests. RHM_RUN stands for that run's workdir.
RHM_RUN = "<rhm_tiny_run>"
RUNS = [
    pytest.param(["--renderer", "warp"], id="warp"),  # 256 px
    pytest.param(["--renderer", "model"], id="model", marks=pytest.mark.slow),
    pytest.param(["--renderer", "rhm", "--renderer-checkpoint", RHM_RUN], id="rhm", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("options", RUNS)
def test_generate_memory_does_not_grow_with_audio_length(options, quick_pipeline, inputs, main_env, request):
    workdir, _ = quick_pipeline
    photo, short_audio, long_audio = inputs
    if RHM_RUN in options:
        options = [str(request.getfixturevalue("rhm_tiny_run")[0]) if o == RHM_RUN else o for o in options]

    def cmd(audio: Path) -> list[str]:
        return [sys.executable, "-m", "macl_jax.main", "generate", "--checkpoint", str(workdir), "--image", str(photo),
                "--audio", str(audio), "--out", str(audio.with_suffix(".mp4")), "--progress", "on", *CHUNKING, *options]

    figures = assert_memory_flat(cmd, short_audio, long_audio, env=main_env())
    print(f"\n{' '.join(options)}: {json.dumps(figures)}")
