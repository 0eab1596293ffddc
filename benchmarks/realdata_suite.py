"""Real-data preprocessing: frames per second per core, and what that means for all of VoxCeleb2.

Runs the per-video function (data_pipelines.real.preprocess.preprocess_video) on the VoxCeleb2
fixture's good clips: 224x224 H.264 at 25 fps like VoxCeleb2 itself, with the animated real
face. One process, so the figure is per core; a build runs one such process per core (plain
build, `--shard i/N` workers or Beam workers), so it scales by the number of cores.

Projection: VoxCeleb2 dev + test = 1,092,009 + 36,237 = 1,128,246 utterances; at an assumed
8 s mean length and 25 fps that is 225.6 M frames.
"""

from __future__ import annotations

import os
import tempfile
import time


from benchmarks.harness import Row, median_time

VOX2_UTTERANCES = 1_092_009 + 36_237
MEAN_SECONDS = 8.0
FPS = 25


def run() -> list[Row]:
    from data_pipelines.real import fixtures, preprocess

    rows: list[Row] = []
    root = tempfile.mkdtemp(prefix="realdata-bench-")
    manifest = fixtures.load_manifest(os.path.dirname(fixtures.make_voxceleb2(root, seconds=2.0)))
    options = preprocess.PreprocessOptions(min_frames=20)
    clips = []
    for rel in manifest["truth"].values():
        video = os.path.join(root, rel.replace(".truth.npz", ".mp4"))
        audio = video.replace("/mp4/", "/aac/").replace(".mp4", ".m4a")
        clips.append((video, audio))
    preprocess.preprocess_video(*clips[0], options)  # dlib models load once per process

    per_clip = []
    frames = 0
    cpu_start = time.process_time()
    for video, audio in clips:
        seconds = median_time(lambda v=video, a=audio: preprocess.preprocess_video(v, a, options), warmup=0, repeats=3)
        n = len(preprocess.preprocess_video(video, audio, options).frames)
        per_clip.append(seconds)
        frames += n
    # CPU time counts every thread of this process (PyAV decodes with threads): CPU seconds per
    # frame is what a core spends, and unlike wall time it does not grow when the machine is shared.
    cpu_rate = 4 * frames / (time.process_time() - cpu_start)  # 3 timed runs + 1 counting run per clip
    rate = frames / sum(per_clip)
    rows.append(Row("preprocess 224 px 25 fps video (decode, HOG + 68 points per frame, crop, pose; no JPEG or writing)", cpu_rate,
                    "frames/s per core (CPU time)", notes=f"{len(clips)} fixture clips of 2 s; wall-clock: {rate:.1f} frames/s"))
    rate = cpu_rate

    # Where the time goes, on one clip: decoding, detection + landmarks, everything after.
    from macl_jax.media.video_io import read_video

    video, audio = clips[0]
    decoded = read_video(video, target_fps=25)
    decode_s = median_time(lambda: read_video(video, target_fps=25), warmup=1, repeats=3)
    track_s = median_time(lambda: preprocess.track_face(decoded.frames, options), warmup=0, repeats=3)
    total_s = median_time(lambda: preprocess.preprocess_video(video, audio, options), warmup=0, repeats=3)
    n = len(decoded.frames)
    rows.append(Row("  share: decoding", 100 * decode_s / total_s, "%", notes=f"{n / decode_s:.0f} frames/s"))
    rows.append(Row("  share: face detection + landmarks", 100 * track_s / total_s, "%", notes=f"{n / track_s:.0f} frames/s"))

    # A faceless file costs only the probe frames.
    cat = os.path.join(root, "dev/mp4/id00016/CatVideo001/00001.mp4")
    start = time.perf_counter()
    try:
        preprocess.preprocess_video(cat, None, options)
    except preprocess.SkipClip:
        pass
    rows.append(Row("skip a faceless 224 px video (4 probe frames, HOG + CNN)", time.perf_counter() - start, "s"))

    total_frames = VOX2_UTTERANCES * MEAN_SECONDS * FPS
    core_hours = total_frames / rate / 3600
    rows.append(Row("VoxCeleb2 dev+test frames (assumed)", total_frames / 1e6, "M frames",
                    notes=f"{VOX2_UTTERANCES:,} utterances x {MEAN_SECONDS:g} s x {FPS} fps"))
    rows.append(Row("VoxCeleb2 projected preprocessing", core_hours, "core-hours", notes="at the measured frames/s per core"))
    for workers in (16, 64, 256, 1024):
        rows.append(Row(f"VoxCeleb2 projected wall time on {workers} worker cores", core_hours / workers, "h",
                        notes="linear scaling; I/O and merge not included"))
    return rows


if __name__ == "__main__":
    # Prints only: benchmarks/run.py writes results/ and RESULTS.md for the registered suites.
    for r in run():
        print(f"{r.name}: {r.value:,.3f} {r.unit}  {r.notes}")
