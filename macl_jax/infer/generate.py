"""`macl-jax generate`: a face photo and a speech file to a talking-head video (H.264 + AAC, 25 fps).

    macl-jax generate --checkpoint DIR --image FACE.jpg --audio SPEECH.wav --out OUT.mp4
        [--renderer model|rhm|warp] [--mode max_alpha|mean|sample] [--seed N] [--size PX]
    macl-jax generate --checkpoint DIR --batch jobs.csv

DIR is a `macl-jax pipeline` workdir (its `mdn/` and `renderer/` runs, and `rhm/` when one was
trained there) or an `mdn` run's workdir (then `--renderer warp`, or `--renderer-checkpoint` for a
`renderer` or `rhm` run). The face is found with
dlib in a photo of any size and cropped; the speech may be any length, sample rate, channel count
and format FFmpeg reads (wav, flac, mp3, m4a, ...). The video carries the input audio and has one
frame per 40 ms of it. `jobs.csv` has a header with `image,audio,out` and optionally `mode`, `seed`,
`renderer` and `emotion`; relative paths are taken from the CSV's folder. A failed job never leaves
a partial video; the other jobs go on, and the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from macl_jax.checkpoint import CheckpointError
from macl_jax.config import ConfigError
from macl_jax.infer.inputs import crop_face, decode_speech, find_face, load_photo
from macl_jax.infer.motion import LandmarkPredictor, reference_face
from macl_jax.infer.render import ModelRenderer, RHMRenderer, WarpFrames
from macl_jax.media.video_io import MediaError, WavSlices, write_video
from macl_jax.train.restore import EvalError

JOB_FIELDS = ("image", "audio", "out", "mode", "seed", "renderer", "emotion")
RENDERERS = ("model", "rhm", "warp")
# The training stage whose run each learned renderer restores, and the command that trains one.
RENDERER_STAGES = {"model": "renderer", "rhm": "rhm"}
TRAIN_COMMANDS = {
    "model": "macl-jax renderer --config configs/renderer.py:cpu --workdir {root}/renderer",
    "rhm": "macl-jax rhm --config configs/rhm.py:cpu --workdir {root}/rhm",
}


class JobError(ValueError):
    """A generation job cannot run as asked; the message says what to change."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="macl-jax generate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a `macl-jax pipeline` workdir or an `mdn` run's workdir")
    p.add_argument("--image", help="face photo (any size; JPEG, PNG, ...)")
    p.add_argument("--audio", help="speech (wav, flac, mp3, m4a, ...; any rate, channels, length)")
    p.add_argument("--out", help="output .mp4")
    p.add_argument("--batch", help="CSV of jobs (columns image,audio,out[,mode,seed,renderer,emotion])")
    p.add_argument("--renderer", choices=RENDERERS, help="default: model when the checkpoint has a renderer run, else warp")
    p.add_argument("--renderer-checkpoint", help="a `renderer` or `rhm` run's workdir (default: DIR/renderer, DIR/rhm)")
    p.add_argument("--mode", default=None, help="MDN output: max_alpha (the paper's), mean or sample (default: the run's infer.mode)")
    p.add_argument("--seed", type=int, default=0, help="seed of --mode sample")
    p.add_argument("--emotion", default="", help="emotion, for models that take one")
    p.add_argument("--size", type=int, default=256, help="output size of --renderer warp, px")
    p.add_argument("--crop-scale", type=float, default=2.0, help="crop side / face extent (the training data's framing)")
    p.add_argument("--chunk-frames", type=int, default=250, help="frames per MDN chunk (memory does not grow with the audio's length)")
    p.add_argument("--overlap", type=int, default=25, help="frames shared by neighbouring chunks, cross-faded")
    p.add_argument("--checkpoint-step", default="best", help="best (the run's selected state), final, or a step number")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto", help="progress bar (auto: on a terminal)")
    return p


def run_directories(checkpoint: str | Path, renderer_checkpoint: str | None) -> tuple[Path, dict[str, Path]]:
    """(mdn run, {renderer kind: run}) of a pipeline workdir or an mdn workdir; the learned
    renderers found (`model`: DIR/renderer, `rhm`: DIR/rhm, or --renderer-checkpoint by its stage)."""
    root = Path(checkpoint)
    if (root / "mdn" / "config.json").is_file():
        mdn_dir = root / "mdn"
    elif (root / "config.json").is_file():
        mdn_dir = root
    else:
        raise JobError(
            f"--checkpoint {root}: neither {root / 'mdn' / 'config.json'} nor {root / 'config.json'} exists; pass a "
            "`macl-jax pipeline` workdir or the workdir of an `mdn` run"
        )
    runs = {kind: root / stage for kind, stage in RENDERER_STAGES.items() if (root / stage / "config.json").is_file()}
    if renderer_checkpoint:
        path = Path(renderer_checkpoint)
        try:
            stage = json.loads((path / "config.json").read_text())["stage"]
        except (OSError, ValueError, KeyError, TypeError):
            raise JobError(f"--renderer-checkpoint {path}: no readable config.json there; pass a `renderer` or `rhm` run's workdir") from None
        kinds = [kind for kind, s in RENDERER_STAGES.items() if s == stage]
        if not kinds:
            raise JobError(f"--renderer-checkpoint {path} is a {stage!r} run; pass a `renderer` or `rhm` run's workdir")
        runs[kinds[0]] = path
    return mdn_dir, runs


def read_jobs(path: str | Path, defaults: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of a jobs CSV as job dicts, paths resolved against the CSV's folder."""
    path = Path(path)
    if not path.is_file():
        raise JobError(f"--batch {path}: file not found")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in ("image", "audio", "out") if c not in header]
        unknown = [c for c in header if c not in JOB_FIELDS]
        if missing or unknown:
            raise JobError(f"--batch {path}: header {header}; needs image,audio,out and may add {', '.join(JOB_FIELDS[3:])}"
                           + (f" (unknown: {unknown})" if unknown else ""))
        jobs = []
        for line, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            job = dict(defaults)
            job.update({k: v for k, v in row.items() if v})
            for key in ("image", "audio", "out"):
                if not row.get(key):
                    raise JobError(f"--batch {path}, line {line}: {key} is empty")
                job[key] = str((path.parent / row[key]).resolve()) if not Path(row[key]).is_absolute() else row[key]
            job["seed"] = int(job["seed"])
            job["line"] = line
            jobs.append(job)
    if not jobs:
        raise JobError(f"--batch {path}: no jobs (only a header?)")
    return jobs


class Generator:
    """Loads the runs once and turns jobs into videos."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.mdn_dir, self.renderer_runs = run_directories(args.checkpoint, args.renderer_checkpoint)
        self._predictors: dict[str | None, Any] = {}
        self._renderers: dict[str, Any] = {}

    def predictor(self, mode: str | None):
        if mode not in self._predictors:
            self._predictors[mode] = LandmarkPredictor(
                self.mdn_dir, checkpoint=self.args.checkpoint_step, mode=mode,
                chunk_frames=self.args.chunk_frames, overlap=self.args.overlap,
            )
        return self._predictors[mode]

    def renderer_kind(self, requested: str | None) -> str:
        kind = requested or ("model" if "model" in self.renderer_runs else "warp")
        if kind not in RENDERERS:
            raise JobError(f"renderer {kind!r}: choose one of {', '.join(RENDERERS)}")
        if kind in RENDERER_STAGES and kind not in self.renderer_runs:
            root = Path(self.args.checkpoint)
            raise JobError(
                f"--renderer {kind}: {root} has no `{RENDERER_STAGES[kind]}` run. Train one with "
                f"`{TRAIN_COMMANDS[kind].format(root=root)} --config.data.dir=<SynthTalk dir>`, pass "
                "--renderer-checkpoint DIR of such a run, or use --renderer warp"
            )
        return kind

    def learned_renderer(self, kind: str):
        """The `model` or `rhm` renderer, loaded once."""
        if kind not in self._renderers:
            make = ModelRenderer if kind == "model" else RHMRenderer
            self._renderers[kind] = make(self.renderer_runs[kind], self.args.checkpoint_step)
        return self._renderers[kind]

    def run(self, job: dict[str, Any], show_progress: bool) -> dict[str, Any]:
        if job.get("emotion"):
            raise JobError(
                f"emotion {job['emotion']!r}: the MACL landmark model has no emotion input; leave --emotion out "
                "(emotion is an input of the MEAD-trained MSEF + AATU model)"
            )
        out = Path(job["out"])
        if out.suffix.lower() not in (".mp4", ".m4v", ".mov"):
            raise JobError(f"--out {out}: give an .mp4 (or .mov) path")
        started = time.perf_counter()
        kind = self.renderer_kind(job.get("renderer"))
        predictor = self.predictor(job.get("mode"))
        photo = load_photo(job["image"])
        landmarks = find_face(photo, job["image"])
        size = self.learned_renderer(kind).size if kind in RENDERER_STAGES else int(self.args.size)
        crop, crop_landmarks = crop_face(photo, landmarks, size, float(self.args.crop_scale))
        face = reference_face(crop_landmarks)
        if kind == "model":
            frames_of = self.learned_renderer(kind).bind(crop)
        elif kind == "rhm":
            frames_of = self.learned_renderer(kind).bind(crop, crop_landmarks)
        else:
            frames_of = WarpFrames(crop, crop_landmarks)
        with tempfile.TemporaryDirectory(prefix="macl-generate-") as tmp:
            speech = decode_speech(job["audio"], tmp)
            bar = tqdm(total=speech.num_frames, unit="frame", desc=out.name, disable=not show_progress, leave=False)

            def frames():
                for _, track in predictor.stream(speech, face, seed=int(job.get("seed", 0))):
                    for frame in frames_of(track):
                        bar.update(1)
                        yield frame

            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                write_video(out, frames(), fps=25, audio=WavSlices(speech.track_wav), sample_rate=speech.track_rate)
            finally:
                bar.close()
        seconds = time.perf_counter() - started
        return {
            "out": str(out), "frames": speech.num_frames, "audio_seconds": round(speech.seconds, 3), "renderer": kind,
            "mode": str(predictor.config.infer.mode), "mdn_step": predictor.step, "seconds": round(seconds, 2),
            "frames_per_second": round(speech.num_frames / seconds, 1),
        }


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    defaults = {"mode": args.mode, "seed": args.seed, "renderer": args.renderer, "emotion": args.emotion}
    try:
        if args.batch:
            if args.image or args.audio or args.out:
                raise JobError("give either --batch or --image/--audio/--out, not both")
            jobs = read_jobs(args.batch, defaults)
        else:
            missing = [f"--{k}" for k in ("image", "audio", "out") if not getattr(args, k)]
            if missing:
                raise JobError(f"{', '.join(missing)} required (or --batch jobs.csv)")
            jobs = [{**defaults, "image": args.image, "audio": args.audio, "out": args.out}]
        generator = Generator(args)
    except (JobError, ConfigError) as error:
        print(f"macl-jax generate: error: {error}", file=sys.stderr)
        return 2
    show = args.progress == "on" or (args.progress == "auto" and sys.stderr.isatty())
    results, failed = [], 0
    for job in jobs:
        where = f" (line {job['line']} of {args.batch})" if "line" in job else ""
        try:
            results.append({"ok": True, **generator.run(job, show)})
        except (JobError, ConfigError, MediaError, EvalError, CheckpointError, ValueError) as error:
            failed += 1
            results.append({"ok": False, "out": job["out"], "error": str(error)})
            print(f"macl-jax generate: job{where} failed: {error}", file=sys.stderr)
    print(json.dumps(results if args.batch else results[0], indent=2))
    return 1 if failed else 0
