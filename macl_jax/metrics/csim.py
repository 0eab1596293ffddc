"""dlib-CSIM: identity similarity as the cosine of dlib's 128-d face descriptors (host side, numpy).

Pipeline per image: dlib HOG frontal face detector (`upsample` times upsampled; the largest face
is used) -> 68-point (or 5-point) shape predictor -> dlib's ResNet descriptor
(`dlib_face_recognition_resnet_model_v1.dat`, 150x150 aligned chip, padding 0.25, no jitter).
CSIM(a, b) = cos(e(a), e(b)); 1 = identical. An image with no detected face gives NaN, and
`summarize` reports how many pairs were lost that way.

This is a proxy for the ArcFace CSIM in papers (ArcFace weights are not available offline) and is
**not comparable** with it: dlib descriptors are not centred, so even different people score
high (about 0.75-0.9; dlib's own same-person rule is Euclidean distance < 0.6 between
descriptors). Compare dlib-CSIM values only with each other. dlib-bin and face_recognition_models
(core dependencies) are imported lazily.
"""

from __future__ import annotations

import functools

import numpy as np

_FACES_INSTALL = "pip install dlib-bin face_recognition_models (dependencies of macl-jax: bash launch/setup.sh installs them)"


def _import_faces():
    try:  # lazy: dlib-bin (a native wheel) and face_recognition_models (pulls in pkg_resources, ~0.2 s)
        import dlib
        import face_recognition_models
    except ImportError as e:
        raise ImportError(f"dlib-CSIM needs dlib and face_recognition_models ({e}); install them with {_FACES_INSTALL}") from e
    return dlib, face_recognition_models


@functools.lru_cache(maxsize=2)
def _models(landmarks: int):
    dlib, frm = _import_faces()
    if landmarks == 68:
        predictor_path = frm.pose_predictor_model_location()
    elif landmarks == 5:
        predictor_path = frm.pose_predictor_five_point_model_location()
    else:
        raise ValueError(f"dlib-CSIM: landmarks must be 68 or 5, got {landmarks}")
    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(predictor_path),
        dlib.face_recognition_model_v1(frm.face_recognition_model_location()),
    )


def _to_uint8(image: np.ndarray, data_range: float) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"dlib-CSIM: images must be (H, W, 3) RGB, got shape {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(np.round(image.astype(np.float64) * (255.0 / data_range)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


class DlibFaceEmbedder:
    """Face descriptors of RGB images; `embed(images) -> (N, 128)` with NaN rows where no face is found."""

    def __init__(self, *, landmarks: int = 68, upsample: int = 1, data_range: float = 255.0):
        self.detector, self.predictor, self.recognizer = _models(landmarks)
        self.upsample = upsample
        self.data_range = data_range

    def embed_one(self, image: np.ndarray) -> np.ndarray:
        img = _to_uint8(image, self.data_range)
        faces = self.detector(img, self.upsample)
        if len(faces) == 0:
            return np.full(128, np.nan)
        shape = self.predictor(img, max(faces, key=lambda r: r.area()))
        return np.asarray(self.recognizer.compute_face_descriptor(img, shape), np.float64)

    def embed(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        return np.stack([self.embed_one(im) for im in images])


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of (N, D) arrays (broadcasting); NaN rows stay NaN."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def csim(reference: np.ndarray, generated: np.ndarray, embedder: DlibFaceEmbedder | None = None) -> np.ndarray:
    """dlib-CSIM per generated image -> (B,); NaN where either image has no detected face.

    `reference` is one (H, W, 3) image (e.g. the source identity, embedded once) or a
    (B, H, W, 3) batch paired with `generated` (B, H, W, 3) (e.g. ground-truth frames).
    """
    embedder = DlibFaceEmbedder() if embedder is None else embedder
    generated = np.asarray(generated)
    if generated.ndim == 3:
        generated = generated[None]
    ref = embedder.embed(reference)
    if len(ref) != 1 and len(ref) != len(generated):
        raise ValueError(f"csim: {len(ref)} reference images for {len(generated)} generated ones; give 1 or as many")
    return cosine(ref, embedder.embed(generated))


def summarize(values: np.ndarray, name: str = "dlib_csim") -> dict[str, float]:
    """Mean over pairs with a face in both images, plus how many pairs had none."""
    values = np.asarray(values, np.float64).reshape(-1)
    valid = np.isfinite(values)
    return {
        name: float(values[valid].mean()) if valid.any() else float("nan"),
        f"{name}/count": float(valid.sum()),
        f"{name}/no_face": float((~valid).sum()),
    }
