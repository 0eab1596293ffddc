"""Windowing of schema clips into the training examples of each model (numpy only).

Each transform maps one clip (see data_pipelines.schema) and a numpy Generator to one example. They
run inside grain, possibly in worker processes: no JAX here. With `train=False` the window position
is fixed (the first valid one) so evaluation sees the same examples every time.

| transform | example | used by |
|---|---|---|
| `SFEWindows` | S steps, stride 3: mel windows (S, 20, 80) and 5-frame stacks (S, 5, H, W, 3) | MACL speech feature extractor |
| `MDNClips` | 64 frames -> T = 60 targets: mel windows (T, 20, 80), landmarks, aligned landmarks, in-plane angle and translation, closed-mouth reference, 3-D pose | landmark MDN, head-motion models |
| `RendererPairs` | (target, reference) frames of one clip, the target's landmarks and their raster | image-to-image renderers |
| `RHMFrames` | K reference frames from the clip's first quarter and a target from the rest: images, edge maps, 2-D/3-D landmarks, poses, the motion-matched warping reference with its mouth masked | Rhythmic Head Motion generator |
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import Any

import numpy as np
from PIL import Image

from data_pipelines.schema import as_text
from macl_jax.geometry import align_2d, closed_mouth_frame, normalise_scale, savgol_smooth
from macl_jax.geometry.camera import Transformed, project_at_pose
from macl_jax.geometry.camera import mouth_box as camera_mouth_box
from macl_jax.geometry.motion_match import match_reference
from macl_jax.media import audio_features
from macl_jax.media.draw import landmark_raster
from macl_jax.media.face_edges import face_edge_map

# Frames on each side of a window centre covered by the 20-row (5-frame) mel window.
_CONTEXT = 2


def decode_frames(encoded: np.ndarray, indices: np.ndarray | list[int], clip_id: str = "", size: int = 0) -> np.ndarray:
    """Decodes the JPEG frames at `indices`: uint8 (len(indices), H, W, 3); resized to size x size
    when `size` > 0 (JPEG's reduced-scale decoding first, then an area-averaging resize)."""
    out = []
    for i in np.asarray(indices).reshape(-1):
        try:
            with Image.open(io.BytesIO(encoded[int(i)])) as image:
                if size > 0 and image.size != (size, size):
                    image.draft("RGB", (size, size))
                    image = image.convert("RGB").resize((size, size), Image.BOX)
                out.append(np.asarray(image.convert("RGB")))
        except Exception as error:  # PIL raises several types for corrupt data
            raise ValueError(
                f"clip {clip_id or '?'}: frame {int(i)} is not a readable image ({error}); rebuild or "
                "re-preprocess this clip (the dataset files may be corrupt)"
            ) from error
    return np.stack(out)


def _clip_frames(example: dict[str, Any]) -> int:
    return int(len(example["frames"]))


def _audio_features(example: dict[str, Any], num_frames: int) -> np.ndarray:
    sample_rate = int(example["sample_rate"])
    fps = float(example["fps"])
    if sample_rate != audio_features.SAMPLE_RATE or fps != 25:
        raise ValueError(
            f"clip {as_text(example['clip_id'])}: {sample_rate} Hz audio at {fps} fps; the pipelines expect "
            f"{audio_features.SAMPLE_RATE} Hz and 25 fps (re-run the dataset's preprocessing)"
        )
    audio = np.asarray(example["audio"], dtype=np.float32)
    need = num_frames * sample_rate // 25
    if len(audio) < need:
        audio = np.pad(audio, (0, need - len(audio)))
    return audio_features.log_mel(audio)


def _check_length(example: dict[str, Any], needed: int, what: str) -> int:
    num_frames = _clip_frames(example)
    if num_frames < needed:
        raise ValueError(
            f"clip {as_text(example['clip_id'])} has {num_frames} frames; {what} needs at least {needed}. "
            "Filter short clips when preparing the dataset or shorten the window in the config."
        )
    return num_frames


def _labels(example: dict[str, Any]) -> dict[str, np.ndarray]:
    return {
        "speaker": np.int32(example["speaker"]),
        "emotion": np.int32(example["emotion"]),
        "intensity": np.int32(example["intensity"]),
    }


@dataclasses.dataclass(frozen=True)
class SFEWindows:
    """`num_steps` centres `stride` frames apart; per centre its mel window and 5 frames.

    With `frames=False` only the audio is windowed (speaker verification, audio-only datasets).
    """

    num_steps: int = 20
    stride: int = 3
    train: bool = True
    frames: bool = True
    # > 0: frames are decoded at this size (e.g. 64 px from a 128 px build for a small visual branch).
    frame_size: int = 0

    @property
    def frames_needed(self) -> int:
        return self.stride * (self.num_steps - 1) + 2 * _CONTEXT + 1

    def __call__(self, example: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        num_frames = _check_length(example, self.frames_needed, f"an SFE window of {self.num_steps} steps")
        last_start = num_frames - self.frames_needed
        start = int(rng.integers(0, last_start + 1)) if self.train else 0
        centres = start + _CONTEXT + self.stride * np.arange(self.num_steps)
        mel = _audio_features(example, num_frames)
        out = {"audio": audio_features.windows_at(mel, centres), "centres": centres.astype(np.int32), **_labels(example)}
        if not self.frames:
            return out
        frame_index = centres[:, None] + np.arange(-_CONTEXT, _CONTEXT + 1)[None, :]
        # Neighbouring 5-frame stacks overlap when stride < 5: decode each frame once.
        unique, inverse = np.unique(frame_index, return_inverse=True)
        frames = decode_frames(example["frames"], unique, as_text(example["clip_id"]), self.frame_size)[inverse.reshape(-1)]
        out["frames"] = frames.reshape(self.num_steps, 2 * _CONTEXT + 1, *frames.shape[1:])
        return out


@dataclasses.dataclass(frozen=True)
class MDNClips:
    """A `clip_frames`-frame clip giving T = clip_frames - 4 per-frame targets (MACL: 64 -> 60).

    Landmarks follow docs/decisions.md#d7-landmark-preprocessing: Savitzky-Golay (7, 3) over the
    whole clip, a clip-constant scale
    and offset, then per-frame 2-D rigid alignment of the 9 T-shape points to the anchor. The
    reference is the aligned frame with the smallest inner-lip area (a closed mouth).
    """

    clip_frames: int = 64
    smooth: bool = True
    train: bool = True
    # False: landmarks and pose only (no mel features), e.g. for landmark statistics.
    audio: bool = True

    def __call__(self, example: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        num_frames = _check_length(example, self.clip_frames, f"an MDN clip of {self.clip_frames} frames")
        start = int(rng.integers(0, num_frames - self.clip_frames + 1)) if self.train else 0
        centres = np.arange(start + _CONTEXT, start + self.clip_frames - _CONTEXT)
        landmarks = np.asarray(example["landmarks_2d"], dtype=np.float64)
        if self.smooth:
            landmarks = savgol_smooth(landmarks, window=7, order=3, axis=0)
        window = landmarks[centres]
        normalised, scale, offset = normalise_scale(window)
        alignment = align_2d(normalised)
        reference_index = closed_mouth_frame(alignment.aligned, method="area")
        out = {
            "landmarks": window.astype(np.float32),
            "aligned": alignment.aligned.astype(np.float32),
            "angle": alignment.angle.astype(np.float32),
            "translation": alignment.translation.astype(np.float32),
            "reference": alignment.aligned[reference_index].astype(np.float32),
            "reference_index": np.int32(reference_index),
            "scale": np.float32(scale),
            "offset": offset.astype(np.float32),
            "head_rotation": np.asarray(example["head_rotation"], np.float32)[centres],
            "head_translation": np.asarray(example["head_translation"], np.float32)[centres],
            "centres": centres.astype(np.int32),
            **_labels(example),
        }
        if self.audio:
            out["audio"] = audio_features.windows_at(_audio_features(example, num_frames), centres)
        return out


@dataclasses.dataclass(frozen=True)
class RendererPairs:
    """A target frame and a reference frame of the same clip (docs/decisions.md#d11-renderer-pairs), plus the target's raster.

    The reference is drawn at least `min_gap` frames from the target, so the renderer cannot copy
    it (MakeItTalk's random pairs could be near-identical). Evaluation pairs frame 0 with the
    middle frame.
    """

    min_gap: int = 8
    raster: bool = True

    train: bool = True

    def __call__(self, example: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        num_frames = _check_length(example, self.min_gap + 1, f"a renderer pair {self.min_gap} frames apart")
        if self.train:
            target = int(rng.integers(0, num_frames))
            allowed = np.flatnonzero(np.abs(np.arange(num_frames) - target) >= self.min_gap)
            reference = int(rng.choice(allowed))
        else:
            target, reference = num_frames // 2, 0
        target_frame, reference_frame = decode_frames(example["frames"], [target, reference], as_text(example["clip_id"]))
        landmarks = np.asarray(example["landmarks_2d"], np.float32)[target]
        out = {
            "target": target_frame,
            "reference": reference_frame,
            "target_landmarks": landmarks,
            "reference_landmarks": np.asarray(example["landmarks_2d"], np.float32)[reference],
            **_labels(example),
        }
        if self.raster:
            out["raster"] = landmark_raster(landmarks, size=target_frame.shape[0])
        return out


# iBUG-68 index of each point's mirror image (subject's right <-> left), for horizontal flips.
FLIP_68 = np.array(
    [*range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, 35, 34, 33, 32, 31,
     45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
     54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65]
)  # fmt: skip


# Random crop of training examples: half-size = landmark-box width times U(1 - s, 1 + s) per axis,
# centre shifted by U(-o, o) of that half-size; the box spans 1.25 half-sizes above the landmark
# centre and 0.75 below (the forehead is kept, the neck mostly not).
_CROP_SCALE, _CROP_OFFSET = 0.2, 0.2
_CROP_ABOVE, _CROP_BELOW = 1.25, 0.75


def _stored_size(encoded: np.ndarray, index: int, clip_id: str) -> tuple[int, int]:
    """(width, height) of a stored frame, read from its header only."""
    try:
        with Image.open(io.BytesIO(encoded[int(index)])) as image:
            return image.size
    except Exception as error:  # PIL raises several types for corrupt data
        raise ValueError(f"clip {clip_id or '?'}: frame {int(index)} is not a readable image ({error})") from error


def _box_affine(box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """2 x 3 map from stored-frame pixels to output pixels when `box` (x0, y0, x1, y1, pixel-edge
    coordinates) is resized to size x size.

    Pixel centres sit at integers, so an edge coordinate e is the centre coordinate e - 0.5."""
    x0, y0, x1, y1 = box
    ax, ay = size / (x1 - x0), size / (y1 - y0)
    return np.array([[ax, 0.0, (0.5 - x0) * ax - 0.5], [0.0, ay, (0.5 - y0) * ay - 0.5]])


def _mirrored_affine(affine: np.ndarray, stored_width: int, size: int) -> np.ndarray:
    """The map from the mirrored stored frame to the mirrored output: x -> (size - 1) - A((W - 1) - x).

    Flipping mirrors the output image and the 3-D scene together; points of the mirrored scene
    project into the mirrored stored frame, and this affine carries them into the output."""
    out = affine.copy()
    out[0, 2] = (size - 1) - affine[0, 2] - affine[0, 0] * (stored_width - 1)
    return out


def _crop_resize(frame: np.ndarray, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """`frame` (H, W, 3) uint8 cut to `box` (may reach outside: black there) and resized bicubically
    (anti-aliased) to size x size."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = box
    pad = max(0, math.ceil(max(-x0, -y0, x1 - w, y1 - h))) + 1
    if pad > 0:
        frame = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)))
    image = Image.fromarray(frame)
    return np.asarray(image.resize((size, size), Image.Resampling.BICUBIC, box=(x0 + pad, y0 + pad, x1 + pad, y1 + pad)))


def mouth_box(landmarks: np.ndarray, size: int) -> np.ndarray:
    """(..., 68, 2) output-pixel landmarks -> int32 (..., 4) box (x0, y0, x1, y1), ends exclusive: the
    pixels whose centres lie in `macl_jax.geometry.camera.mouth_box` (the mouth points padded by 5 px
    per 256 px of `size`, clamped to the image)."""
    box = camera_mouth_box(np.asarray(landmarks, np.float64), size, size)
    return np.concatenate([np.ceil(box[..., :2]), np.floor(box[..., 2:]) + 1], axis=-1).astype(np.int32)


def box_mask(box: np.ndarray, size: int) -> np.ndarray:
    """uint8 (..., size, size, 1): 1 inside the (x0, y0, x1, y1) box(es), 0 outside."""
    box = np.asarray(box)
    x = np.arange(size)
    inside_x = (x >= box[..., 0, None]) & (x < box[..., 2, None])
    inside_y = (x >= box[..., 1, None]) & (x < box[..., 3, None])
    return (inside_y[..., :, None] & inside_x[..., None, :]).astype(np.uint8)[..., None]


@dataclasses.dataclass(frozen=True)
class RHMFrames:
    """One Rhythmic Head Motion generator example (docs/rhm_training.md#training-examples).

    References: `num_refs` distinct frames from the first `ref_fraction` of the clip (random order
    in training; evenly spaced at evaluation). Target: one frame from the rest (the middle of the
    rest at evaluation). The warping reference is chosen by the motion matcher
    (`macl_jax.geometry.motion_match.match_reference`: in training the farthest head rotation with
    probability `worst_ref_prob`, else a random reference; at evaluation the nearest), and with
    `mask_mouth` its copy `warp_ref_image` has the mouth box blacked out, so the generator must
    synthesise the mouth instead of copying it.

    Images are decoded at `size` (0: as stored). With `augment` (training only) each role (the
    references together, the target) gets a random crop around its first frame's landmarks
    before the resize, and the whole example is mirrored with probability 1/2 (landmark indices
    swapped; 3-D points, rotations and translations mirrored about the camera's x = 0 plane).
    `*_transform` (2 x 3) maps pixels of the stored frame (mirrored when `flipped`) to output
    pixels, so the 3-D points, projected as the dataset projects them, land on the output image
    (what the 3-D render needs). Landmark maps are `face_edge_map`s drawn at the output size.
    """

    num_refs: int = 8
    ref_fraction: float = 0.25
    size: int = 0
    worst_ref_prob: float = 0.75
    mask_mouth: bool = True
    augment: bool = False
    train: bool = True
    # How the dataset's posed 3-D landmarks project onto its stored frames
    # (`data_pipelines.datasets.dataset_camera`); with it the example also holds `ani_landmarks`
    # and `ani_map`: the warping reference's face at the target's pose, as the 3-D render draws it.
    camera: Any = None

    def __post_init__(self):
        if self.num_refs < 1:
            raise ValueError(f"RHMFrames: num_refs must be >= 1, got {self.num_refs}")
        if not 0.0 < self.ref_fraction < 1.0:
            raise ValueError(f"RHMFrames: ref_fraction must be in (0, 1), got {self.ref_fraction}")
        if self.size < 0:
            raise ValueError(f"RHMFrames: size must be >= 0 (0 keeps the stored size), got {self.size}")

    def _pool(self, num_frames: int) -> int:
        return int(num_frames * self.ref_fraction)

    @property
    def frames_needed(self) -> int:
        """The shortest clip with `num_refs` reference candidates and at least one target."""
        n = self.num_refs + 1
        while self._pool(n) < self.num_refs or self._pool(n) >= n:
            n += 1
        return n

    def _choose(self, num_frames: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        pool = self._pool(num_frames)
        if self.train:
            refs = rng.choice(pool, size=self.num_refs, replace=False)
            target = int(rng.integers(pool, num_frames))
        else:
            refs = np.round(np.linspace(0, pool - 1, self.num_refs)).astype(np.int64)
            target = pool + (num_frames - pool) // 2
        return refs.astype(np.int64), target

    def _crop_box(self, landmarks: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float, float]:
        lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
        cx, cy = 0.5 * (lo + hi)
        half = float(hi[0] - lo[0])
        w = half * rng.uniform(1 - _CROP_SCALE, 1 + _CROP_SCALE)
        h = half * rng.uniform(1 - _CROP_SCALE, 1 + _CROP_SCALE)
        cx += rng.uniform(-_CROP_OFFSET, _CROP_OFFSET) * w
        cy += rng.uniform(-_CROP_OFFSET, _CROP_OFFSET) * h
        return (cx - w, cy - _CROP_ABOVE * h, cx + w, cy + _CROP_BELOW * h)

    def __call__(self, example: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        num_frames = _check_length(
            example, self.frames_needed, f"{self.num_refs} references from the first {self.ref_fraction:g} and a target"
        )
        clip_id = as_text(example["clip_id"])
        refs, target = self._choose(num_frames, rng)
        indices = np.concatenate([refs, [target]])
        rotation = np.asarray(example["head_rotation"], np.float64)[indices]
        translation = np.asarray(example["head_translation"], np.float64)[indices]
        warp_ref = match_reference(rotation[:-1], rotation[-1], train=self.train, rng=rng, worst_prob=self.worst_ref_prob)

        landmarks = np.asarray(example["landmarks_2d"], np.float64)[indices]
        if not np.all(np.isfinite(landmarks)):
            bad = sorted({int(indices[i]) for i in np.flatnonzero(~np.isfinite(landmarks).all(axis=(1, 2)))})
            raise ValueError(f"clip {clip_id}: frames {bad} have no 2-D landmarks (NaN); drop such clips or frames when preparing the data")
        landmarks_3d = np.asarray(example["landmarks_3d"], np.float64)[indices]
        width, height = _stored_size(example["frames"], indices[0], clip_id)
        if width != height:
            raise ValueError(f"clip {clip_id}: frames are {width}x{height}; RHMFrames expects the schema's square face crops")
        size = self.size or width
        augment = self.augment and self.train
        if augment:
            ref_box, target_box = self._crop_box(landmarks[0], rng), self._crop_box(landmarks[-1], rng)
            flip = bool(rng.random() < 0.5)
            stored = decode_frames(example["frames"], indices, clip_id)
            boxes = [ref_box] * len(refs) + [target_box]
            frames = np.stack([_crop_resize(f, b, size) for f, b in zip(stored, boxes)])
        else:
            ref_box = target_box = (0.0, 0.0, float(width), float(height))
            flip = False
            frames = decode_frames(example["frames"], indices, clip_id, self.size)
        affines = np.stack([_box_affine(ref_box, size)] * len(refs) + [_box_affine(target_box, size)])
        landmarks = np.einsum("nij,nkj->nki", affines[:, :, :2], landmarks) + affines[:, None, :, 2]
        if flip:
            frames = frames[:, :, ::-1]
            landmarks = landmarks[:, FLIP_68] * np.array([-1.0, 1.0]) + np.array([size - 1.0, 0.0])
            affines = np.stack([_mirrored_affine(a, width, size) for a in affines])
            # Mirroring x (M = diag(-1, 1, 1)): points M p, poses M R M and M t, so that
            # posed = R frontal + t still holds for the mirrored (symmetric) frontal face.
            mirror = np.array([-1.0, 1.0, 1.0])
            landmarks_3d = landmarks_3d[:, FLIP_68] * mirror
            rotation = rotation * mirror[:, None] * mirror[None, :]
            translation = translation * mirror
        frames = np.ascontiguousarray(frames)
        maps = face_edge_map(landmarks, size)[..., None]
        ani = {}
        if self.camera is not None:
            ani_landmarks = project_at_pose(
                landmarks_3d[warp_ref], (rotation[warp_ref], translation[warp_ref]),
                (rotation[-1], translation[-1]), Transformed(self.camera, affines[-1]),
            )
            ani = {"ani_landmarks": ani_landmarks.astype(np.float32), "ani_map": face_edge_map(ani_landmarks, size)[..., None]}
        boxes = mouth_box(landmarks, size)
        masks = box_mask(boxes[[warp_ref, -1]], size)
        warp_ref_image = frames[warp_ref].copy()
        if self.mask_mouth:
            warp_ref_image[masks[0, ..., 0] == 1] = 0
        k = len(refs)
        return {
            "ref_indices": refs.astype(np.int32),
            "target_index": np.int32(target),
            "ref_images": frames[:k],
            "target_image": frames[k],
            "ref_maps": maps[:k],
            "target_map": maps[k],
            "ref_landmarks": landmarks[:k].astype(np.float32),
            "target_landmarks": landmarks[k].astype(np.float32),
            "ref_landmarks_3d": landmarks_3d[:k].astype(np.float32),
            "target_landmarks_3d": landmarks_3d[k].astype(np.float32),
            "ref_rotation": rotation[:k].astype(np.float32),
            "ref_translation": translation[:k].astype(np.float32),
            "target_rotation": rotation[k].astype(np.float32),
            "target_translation": translation[k].astype(np.float32),
            "warp_ref": np.int32(warp_ref),
            "warp_ref_image": warp_ref_image,
            "warp_ref_mouth_mask": masks[0],
            "target_mouth_mask": masks[1],
            "ref_mouth_boxes": boxes[:k],
            "target_mouth_box": boxes[k],
            "ref_transform": affines[0].astype(np.float32),
            "target_transform": affines[k].astype(np.float32),
            "flipped": np.bool_(flip),
            **ani,
            **_labels(example),
        }


@dataclasses.dataclass(frozen=True)
class KeepFields:
    """A window transform that keeps only the fields a trainer reads (less to batch and transfer)."""

    window: Any
    fields: tuple[str, ...]

    def __call__(self, example: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        out = self.window(example, rng)
        return {k: out[k] for k in self.fields}


class EvaluationWindows:
    """Random-access view of a clip source through a window transform, at the transform's fixed
    (train=False) positions: the same examples at every evaluation, for any batch or device count."""

    def __init__(self, clips: Any, transform: Any):
        window = getattr(transform, "window", transform)  # field filters wrap a window
        if getattr(window, "train", False):
            raise ValueError(f"evaluation needs a deterministic window: {type(window).__name__}(train=False)")
        self._clips, self._transform = clips, transform

    def __len__(self) -> int:
        return len(self._clips)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self._transform(self._clips[int(index)], np.random.default_rng(0))


WINDOWS = {"sfe": SFEWindows, "mdn": MDNClips, "renderer": RendererPairs, "rhm": RHMFrames}


def make_window(kind: str, **kwargs: Any):
    """The transform of a model family by name: sfe | mdn | renderer | rhm."""
    if kind not in WINDOWS:
        raise ValueError(f"unknown window type {kind!r}; choose one of {', '.join(WINDOWS)}")
    return WINDOWS[kind](**kwargs)
