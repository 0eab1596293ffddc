"""Tiny raw datasets in the exact distributed layouts, with known ground truth and broken files.

A real photo (`skimage.data.astronaut()`) is animated with a known in-plane rotation,
translation and scale of the head and a jaw/lower-lip drop driven by the speech envelope; the
68 ground-truth points per frame are the photo's dlib landmarks moved by the same known maps.
Speech is the CMU ARCTIC recording shipped with the package (`macl_jax.media.samples`), looped.
Videos are H.264 + AAC written with `video_io.write_video`.

    python -m data_pipelines.real fixtures --dataset voxceleb2 --out /tmp/raw_vox2

Each root gets `fixture_manifest.json`: the clip ids that must come out of a build, the files
that must be reported with their skip reason, the notes expected on kept clips, and the
ground-truth files. Ground truth sits next to each animated video as `<clip>.truth.npz`
(`landmarks` (T, 68, 2) in source-video pixels at the source frame rate, `angle_deg`,
`translation`, `scale`, `mouth`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile as sf
from scipy import ndimage

from data_pipelines.real.preprocess import PreprocessOptions, detect_faces, landmarks_68, to_crop
from macl_jax.media.atomic import atomic_output
from macl_jax.media.samples import arctic_speech_file
from macl_jax.media.video_io import nearest_frame_indices, read_video, write_video, write_wav

DATASETS = ("voxceleb2", "voxceleb1", "mead")


@functools.lru_cache(maxsize=1)
def photo() -> tuple[np.ndarray, np.ndarray]:
    """(astronaut RGB (512, 512, 3) uint8, its dlib 68 landmarks (68, 2) float64)."""
    from skimage import data

    image = data.astronaut()
    boxes, _ = detect_faces(image, PreprocessOptions(detect_max_side=1024), use_cnn=False)
    if not boxes:
        raise RuntimeError("dlib found no face in skimage.data.astronaut(); check the dlib-bin install")
    return image, landmarks_68(image, boxes[0])


@dataclasses.dataclass(frozen=True, eq=False)
class AnimatedFace:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    landmarks: np.ndarray  # float64 (T, 68, 2), ground truth in frame pixels
    angle_deg: np.ndarray  # (T,) in-plane rotation applied to the photo (image y down: clockwise)
    translation: np.ndarray  # (T, 2) pixels
    scale: np.ndarray  # (T,)
    mouth: np.ndarray  # (T,) jaw drop at the chin, photo pixels


def _mouth_field(points: np.ndarray, landmarks: np.ndarray, amount: float) -> np.ndarray:
    """Downward displacement (..., 2) of a jaw drop of `amount` photo pixels at the chin.

    Zero above the lip line, rising smoothly to full over the lower lip, constant to the chin,
    fading below it; Gaussian across the face. Its gradient stays < 0.6 for amounts <= 6 px, so
    the fixed-point inversion in `animate_face` converges.
    """
    lip_line = landmarks[[60, 64, 62, 66], 1].mean()
    lower_lip = landmarks[57, 1]
    chin = landmarks[8, 1]
    centre_x = landmarks[[48, 54], 0].mean()
    half_width = 0.5 * (landmarks[12, 0] - landmarks[4, 0])
    x, y = points[..., 0], points[..., 1]
    ramp = np.clip((y - lip_line) / max(lower_lip + 4 - lip_line, 1.0), 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)
    fade = np.exp(-np.maximum(0.0, y - chin) ** 2 / (2 * (0.4 * (chin - lip_line)) ** 2))
    across = np.exp(-((x - centre_x) ** 2) / (2 * half_width**2))
    d = np.zeros(points.shape)
    d[..., 1] = amount * ramp * fade * across
    return d


def animate_face(
    num_frames: int,
    fps: float,
    frame_size: tuple[int, int] = (224, 224),
    *,
    base_scale: float = 1.3,
    angle_amplitude: float = 8.0,
    shift_amplitude: float = 6.0,
    mouth: np.ndarray | None = None,
    centre: tuple[float, float] | None = None,
    phase: float = 0.0,
) -> AnimatedFace:
    """The photo's face with a known pose and mouth per frame (frame_size = (height, width)).

    Frame point u = s R(angle) (q - c) + centre + shift, where q is a point of the photo after
    the mouth warp and c the photo's landmark centroid. Frames are sampled backwards (bilinear),
    ground truth pushed forwards: q = p + d(q) solved by fixed-point iteration.
    """
    image, marks = photo()
    h, w = frame_size
    t = np.arange(num_frames) / fps
    angle = angle_amplitude * np.sin(2 * np.pi * 0.7 * t + phase)
    shift = shift_amplitude * np.stack([np.sin(2 * np.pi * 0.5 * t + phase), np.cos(2 * np.pi * 0.4 * t + phase)], -1)
    scale = base_scale * (1 + 0.04 * np.sin(2 * np.pi * 0.6 * t + phase))
    mouth = np.zeros(num_frames) if mouth is None else np.asarray(mouth, np.float64)
    c = marks.mean(axis=0)
    out_centre = np.array(centre if centre is not None else ((w - 1) / 2, (h - 1) / 2))
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)), -1)
    frames = np.empty((num_frames, h, w, 3), np.uint8)
    truth = np.empty((num_frames, 68, 2))
    for i in range(num_frames):
        th = np.deg2rad(angle[i])
        rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        offset = out_centre + shift[i]
        q = (grid - offset) @ rot / scale[i] + c  # R^T (u - o) / s + c, row vectors
        p = q - _mouth_field(q, marks, mouth[i])
        coords = [p[..., 1], p[..., 0]]
        frames[i] = np.stack(
            [np.clip(np.round(ndimage.map_coordinates(image[..., k], coords, order=1, mode="nearest")), 0, 255) for k in range(3)],
            -1,
        ).astype(np.uint8)
        qi = marks.copy()
        for _ in range(30):
            qi = marks + _mouth_field(qi, marks, mouth[i])
        truth[i] = scale[i] * (qi - c) @ rot.T + offset
    return AnimatedFace(frames, truth, angle, shift, scale, mouth)


@functools.lru_cache(maxsize=4)
def speech(seconds: float, sample_rate: int = 16000) -> np.ndarray:
    """`seconds` of real speech, float32 mono in [-1, 1]: CMU ARCTIC awb a0007, looped, peak 0.9."""
    audio, rate = sf.read(arctic_speech_file(), dtype="float32")
    if rate != sample_rate:
        import librosa

        audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate)
    audio = np.resize(audio, int(seconds * sample_rate))
    return (0.9 * audio / max(1e-6, float(np.abs(audio).max()))).astype(np.float32)


def mouth_from_audio(audio: np.ndarray, num_frames: int, fps: float, sample_rate: int = 16000, amount: float = 5.0) -> np.ndarray:
    """Jaw drop per frame following the speech envelope (0 .. amount photo pixels)."""
    hop = sample_rate / fps
    energy = np.array([np.sqrt(np.mean(audio[int(i * hop) : int((i + 1) * hop)] ** 2) + 1e-12) for i in range(num_frames)])
    return amount * np.clip(energy / max(1e-6, np.percentile(energy, 95)), 0, 1)


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> Path:
    """AAC in .m4a (or WAV for .wav); `audio` (N,) mono or (C, N) multi-channel float in [-1, 1]."""
    path = Path(path)
    audio = np.atleast_2d(np.asarray(audio, np.float32))
    if path.suffix == ".wav":
        with atomic_output(path) as tmp:
            sf.write(tmp, audio.T, sample_rate, subtype="PCM_16", format="WAV")
        return path
    layout = {1: "mono", 2: "stereo"}[audio.shape[0]]
    with atomic_output(path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream("aac", rate=sample_rate, layout=layout)
            for start in range(0, audio.shape[1], 4096):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, start : start + 4096]), format="fltp", layout=layout)
                frame.sample_rate = sample_rate
                frame.pts = start
                frame.time_base = Fraction(1, sample_rate)
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    return path


def _stereo_44k(audio: np.ndarray) -> np.ndarray:
    import librosa

    up = librosa.resample(audio, orig_sr=16000, target_sr=44100).astype(np.float32)
    return np.clip(np.stack([up, 0.8 * up]), -1, 1)


class _Writer:
    """Writes fixture files under `root` and records what a build must make of each."""

    def __init__(self, root: str | os.PathLike, seconds: float):
        self.root = Path(root)
        self.seconds = seconds
        self.manifest: dict[str, Any] = {"expected_clips": {}, "expected_skips": {}, "expected_notes": {}, "truth": {}}

    def path(self, rel: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def face_video(self, rel: str, clip_id: str | None, *, fps: float = 25.0, size=(224, 224), with_audio: bool = True,
                   seconds: float | None = None, phase: float = 0.0, **kw) -> tuple[Path, np.ndarray]:
        seconds = seconds or self.seconds
        num = int(round(seconds * fps))
        audio = speech(round(seconds + 0.2, 3))[: int(round(num / fps * 16000))]
        face = animate_face(num, fps, size, mouth=mouth_from_audio(audio, num, fps), phase=phase, **kw)
        path = write_video(self.path(rel), face.frames, fps=fps, audio=audio if with_audio else None, crf=18, preset="veryfast")
        if clip_id is not None:
            truth = path.with_name(path.stem + ".truth.npz")
            np.savez(truth, landmarks=face.landmarks, angle_deg=face.angle_deg, translation=face.translation,
                     scale=face.scale, mouth=face.mouth, fps=fps)
            self.manifest["truth"][clip_id] = str(truth.relative_to(self.root))
        return path, audio

    def keep(self, clip_id: str, split: str, notes: tuple[str, ...] = ()) -> None:
        self.manifest["expected_clips"][clip_id] = split
        if notes:
            self.manifest["expected_notes"][clip_id] = sorted(notes)

    def skip(self, rel: str, reason: str) -> None:
        self.manifest["expected_skips"][rel] = reason

    def finish(self) -> Path:
        path = self.root / "fixture_manifest.json"
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(self.manifest, indent=1, sort_keys=True))
        return path


def _other_image(kind: str, size: tuple[int, int], num: int) -> np.ndarray:
    from skimage import data

    h, w = size
    if kind == "cat":
        img = data.chelsea()[:h, :w]
        img = np.pad(img, ((0, h - img.shape[0]), (0, w - img.shape[1]), (0, 0)), mode="edge")
    else:
        img = np.full((h, w, 3), 128, np.uint8)
    return np.repeat(img[None], num, axis=0)


def _broken_files(w: _Writer, good_video: Path, folder: str, ext: str = ".mp4") -> None:
    data = good_video.read_bytes()
    truncated = w.path(f"{folder}/90001{ext}")
    truncated.write_bytes(data[: len(data) // 2])
    w.skip(str(truncated.relative_to(w.root)), "truncated")
    rng = np.random.default_rng(7)
    junk = w.path(f"{folder}/90002{ext}")
    junk.write_bytes(rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    w.skip(str(junk.relative_to(w.root)), "unreadable")


def make_voxceleb2(root: str | os.PathLike, seconds: float = 1.2) -> Path:
    """`dev/{mp4,aac}/idXXXXX/<video>/<clip>.{mp4,m4a}` and `test/...`, good and broken clips."""
    w = _Writer(root, seconds)
    good, audio = w.face_video("dev/mp4/id00012/21Uxsk56VDQ/00001.mp4", "id00012/21Uxsk56VDQ/00001")
    write_audio(w.path("dev/aac/id00012/21Uxsk56VDQ/00001.m4a"), audio, 16000)
    w.keep("id00012/21Uxsk56VDQ/00001", "train")
    # 29.97 fps video + 44.1 kHz stereo companion audio: both resampled.
    _, audio = w.face_video("dev/mp4/id00012/21Uxsk56VDQ/00002.mp4", "id00012/21Uxsk56VDQ/00002", fps=30000 / 1001, phase=1.0)
    write_audio(w.path("dev/aac/id00012/21Uxsk56VDQ/00002.m4a"), _stereo_44k(audio), 44100)
    w.keep("id00012/21Uxsk56VDQ/00002", "train", ("resampled_fps", "resampled_audio", "downmixed_audio"))
    # 24 fps, no companion m4a: the mp4's own audio is used.
    w.face_video("dev/mp4/id00015/Aa0bBcdEfg1/00001.mp4", "id00015/Aa0bBcdEfg1/00001", fps=24.0, phase=2.0)
    w.keep("id00015/Aa0bBcdEfg1/00001", "train", ("resampled_fps", "audio_from_video"))
    # Two faces side by side: the larger one is tracked.
    w.face_video("dev/mp4/id00015/TwoFaces001/00001.mp4", "id00015/TwoFaces001/00001", size=(224, 448),
                 centre=(110.0, 111.5), phase=0.5)
    _two_faces(w, "dev/mp4/id00015/TwoFaces001/00001.mp4")
    w.keep("id00015/TwoFaces001/00001", "train", ("multiple_faces",))
    w.face_video("test/mp4/id00020/Zz9yYxwVut8/00001.mp4", "id00020/Zz9yYxwVut8/00001", phase=3.0)
    w.keep("id00020/Zz9yYxwVut8/00001", "test", ("audio_from_video",))
    # Broken ones.
    _broken_files(w, good, "dev/mp4/id00012/21Uxsk56VDQ")
    w.face_video("dev/mp4/id00016/NoSound0001/00001.mp4", None, with_audio=False)
    w.skip("dev/mp4/id00016/NoSound0001/00001.mp4", "no_audio")
    cat = _other_image("cat", (224, 224), int(seconds * 25))
    write_video(w.path("dev/mp4/id00016/CatVideo001/00001.mp4"), cat, 25.0, speech(seconds + 0.2)[: int(seconds * 16000)], preset="veryfast")
    w.skip("dev/mp4/id00016/CatVideo001/00001.mp4", "no_face")
    w.face_video("dev/mp4/id00016/ShortClip01/00001.mp4", None, seconds=0.24)
    w.skip("dev/mp4/id00016/ShortClip01/00001.mp4", "too_short")
    return w.finish()


def _two_faces(w: _Writer, rel: str) -> None:
    """Re-renders `rel` with a second, smaller static copy of the face at the right."""
    path = w.root / rel
    video = read_video(path)
    other = animate_face(1, 25.0, (224, 224), base_scale=1.15, angle_amplitude=0.0, shift_amplitude=0.0).frames[0]
    frames = video.frames.copy()
    frames[:, :, 224:] = other
    write_video(path, frames, fps=video.fps, audio=video.audio, preset="veryfast")


def make_voxceleb1(root: str | os.PathLike, seconds: float = 1.5) -> Path:
    """`wav/idXXXXX/<video>/<clip>.wav` (dev and the id10270+ test speakers) and `veri_test.txt`."""
    w = _Writer(root, seconds)
    clips = {
        "id10270/5r0dWxy17C8/00001": "test", "id10270/5r0dWxy17C8/00002": "test",
        "id10271/1gtz-CUIygI/00001": "test", "id10001/1zcIwhmdeo4/00001": "train",
    }  # fmt: skip
    for clip_id, split in clips.items():
        write_wav(w.path(f"wav/{clip_id}.wav"), speech(seconds), 16000)
        w.keep(clip_id, split)
    # 44.1 kHz stereo: resampled and mixed down.
    write_audio(w.path("wav/id10271/1gtz-CUIygI/00002.wav"), _stereo_44k(speech(seconds)), 44100)
    w.keep("id10271/1gtz-CUIygI/00002", "test", ("resampled_audio", "downmixed_audio"))
    write_wav(w.path("wav/id10002/ShortOne123/00001.wav"), speech(seconds)[:1600], 16000)
    w.skip("wav/id10002/ShortOne123/00001.wav", "too_short")
    w.path("wav/id10002/BrokenWav12/00001.wav").write_bytes(b"RIFF\x00\x00" + bytes(range(200)))
    w.skip("wav/id10002/BrokenWav12/00001.wav", "unreadable")
    trials = [
        "1 id10270/5r0dWxy17C8/00001.wav id10270/5r0dWxy17C8/00002.wav",
        "0 id10270/5r0dWxy17C8/00001.wav id10271/1gtz-CUIygI/00001.wav",
        "1 voxceleb1/id10271/1gtz-CUIygI/00001.wav voxceleb1/id10271/1gtz-CUIygI/00002.wav",  # a toolkit's prefix
        "0 id10270/5r0dWxy17C8/00002.wav id10271/1gtz-CUIygI/00002.wav",
    ]
    w.path("veri_test.txt").write_text("\n".join(trials) + "\n")
    w.manifest["trials"] = 4
    return w.finish()


def make_mead(root: str | os.PathLike, seconds: float = 1.2) -> Path:
    """`<actor>/video/<view>/<emotion>/level_<k>/<n>.mp4` at 30 fps + `<actor>/audio/.../<n>.m4a`."""
    w = _Writer(root, seconds)
    size = (240, 320)
    for actor, emotion, level, n, split, phase in (
        ("M003", "angry", 3, "001", "test", 0.0),
        ("W009", "happy", 2, "014", "train", 1.5),
    ):
        _, audio = w.face_video(f"{actor}/video/front/{emotion}/level_{level}/{n}.mp4", f"{actor}/front/{emotion}/level_{level}/{n}",
                                fps=30.0, size=size, phase=phase)
        write_audio(w.path(f"{actor}/audio/{emotion}/level_{level}/{n}.m4a"), _stereo_44k(audio), 44100)
        w.keep(f"{actor}/front/{emotion}/level_{level}/{n}", split, ("resampled_fps", "resampled_audio", "downmixed_audio"))
    # W021's extra directory level (video/1/<view>/...).
    _, audio = w.face_video("W021/video/1/front/neutral/level_1/003.mp4", "W021/front/neutral/level_1/003", fps=30.0, size=size, phase=2.5)
    write_audio(w.path("W021/audio/neutral/level_1/003.m4a"), audio, 16000)
    w.keep("W021/front/neutral/level_1/003", "train", ("resampled_fps",))
    # Another view: not in the `front` config.
    w.face_video("W009/video/left_30/happy/level_2/014.mp4", None, fps=30.0, size=size)
    w.manifest["other_views"] = ["W009/left_30/happy/level_2/014"]
    junk = w.path("W009/video/front/sad/level_1/002.mp4")
    junk.write_bytes(np.random.default_rng(3).integers(0, 256, 10_000, dtype=np.uint8).tobytes())
    w.skip("W009/video/front/sad/level_1/002.mp4", "unreadable")
    return w.finish()


MAKERS = {"voxceleb2": make_voxceleb2, "voxceleb1": make_voxceleb1, "mead": make_mead}


def make(dataset: str, root: str | os.PathLike, **kwargs: Any) -> Path:
    """Writes the fixture of `dataset` under `root`; returns its manifest path."""
    if dataset not in MAKERS:
        raise ValueError(f"unknown fixture dataset {dataset!r}; choose one of {', '.join(MAKERS)}")
    return MAKERS[dataset](root, **kwargs)


def load_manifest(root: str | os.PathLike) -> dict[str, Any]:
    with open(Path(root) / "fixture_manifest.json") as f:
        return json.load(f)


def truth_for_clip(truth_path: str | os.PathLike, crop_box: tuple[float, float, float], start_frame: int,
                   num_frames: int, crop_size: int = 256, fps: float = 25.0) -> dict[str, np.ndarray]:
    """Ground truth of a preprocessed clip: landmarks (T, 68, 2) in crop pixels and angle_deg (T,).

    Follows the preprocessing's re-timing (nearest source frame per 25 fps frame), its cut
    (`start_frame`) and its crop box.
    """
    truth = np.load(truth_path)
    source_fps = float(truth["fps"])
    count = len(truth["landmarks"])
    index = nearest_frame_indices(np.arange(count) / source_fps, source_fps, fps)[start_frame : start_frame + num_frames]
    return {"landmarks": to_crop(truth["landmarks"][index], crop_box, crop_size), "angle_deg": truth["angle_deg"][index]}
