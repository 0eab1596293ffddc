"""Cameras for posed 3-D face points and the mouth box: numpy or jax in, the same out.

No jax import here: grain workers that prepare numpy examples use these (e.g. to place the 3-D
render's landmarks) without loading jax. `macl_jax.geometry.face_mesh` registers the cameras as
pytrees, so under jit and vmap their numbers and a crop's affine may be traced or batched, while
`perspective` is a class constant and stays static.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from macl_jax.geometry._backend import namespace
from macl_jax.geometry.rigid import apply_rigid, unapply_rigid

__all__ = [
    "MOUTH_BOX_INDICES",
    "Camera",
    "Orthographic",
    "Pinhole",
    "Transformed",
    "check_camera",
    "mouth_box",
    "mouth_box_mask",
    "project_at_pose",
]

# Mouth corners, upper-lip peak and centre, lower-lip centre.
MOUTH_BOX_INDICES: tuple[int, ...] = (48, 50, 51, 54, 57)
_MOUTH_MARGIN_AT_256 = 5.0


@dataclasses.dataclass(frozen=True)
class Pinhole:
    """A pinhole at (0, look_y, distance) looking down -z, image y down (SynthTalk's camera).

    x_px = center_x + focal_px * x / (distance - z), y_px = center_y + focal_px * (y - look_y) / (distance - z).
    For SynthTalk at image size S: Pinhole(camera.focal_px(S), camera.center_px(S),
    camera.center_px(S), camera.distance, camera.look_y). Depth for the z-buffer is 1 / (distance - z):
    larger is nearer, and it is affine in the screen position over a planar triangle.
    """

    focal_px: float
    center_x: float
    center_y: float
    distance: float
    look_y: float = 0.0
    perspective: ClassVar[bool] = True

    def project(self, points: Any) -> tuple[Any, Any]:
        """(..., 3) points -> ((..., 2) pixels, (...) inverse distance to the camera)."""
        xp = namespace(points, self.focal_px, self.distance)
        inv = 1.0 / (self.distance - points[..., 2])
        x = self.center_x + self.focal_px * points[..., 0] * inv
        y = self.center_y + self.focal_px * (points[..., 1] - self.look_y) * inv
        return xp.stack([x, y], axis=-1), inv


@dataclasses.dataclass(frozen=True)
class Orthographic:
    """Orthographic (or weak-perspective) view: pixels = scale * (x, y) + offset; depth = depth_sign * z.

    With landmarks stored in pixels (x, y) plus a depth (as 3-D landmark detectors give them) use
    the defaults; set depth_sign=-1 where z grows away from the camera.
    """

    scale: float = 1.0
    offset_x: float = 0.0
    offset_y: float = 0.0
    depth_sign: float = 1.0
    perspective: ClassVar[bool] = False

    def project(self, points: Any) -> tuple[Any, Any]:
        """(..., 3) points -> ((..., 2) pixels, (...) depth, larger nearer)."""
        xp = namespace(points, self.scale)
        x = self.scale * points[..., 0] + self.offset_x
        y = self.scale * points[..., 1] + self.offset_y
        return xp.stack([x, y], axis=-1), self.depth_sign * points[..., 2]


@dataclasses.dataclass(frozen=True, eq=False)
class Transformed:
    """A camera followed by a 2 x 3 pixel affine: pixels' = affine[:, :2] @ pixels + affine[:, 2].

    For frames that were cropped, resized or mirrored after capture: `camera` projects onto the
    stored frame and `affine` carries its pixels into the image at hand. The depth is unchanged.
    An affine with a negative determinant (a mirror) swaps front and back faces on screen.
    """

    camera: Pinhole | Orthographic
    affine: Any  # (2, 3)

    @property
    def perspective(self) -> bool:
        return self.camera.perspective

    def project(self, points: Any) -> tuple[Any, Any]:
        """(..., 3) points -> ((..., 2) pixels of the transformed image, (...) depth)."""
        xy, depth = self.camera.project(points)
        xp = namespace(xy, self.affine)
        a = xp.asarray(self.affine, dtype=xy.dtype)
        x = a[0, 0] * xy[..., 0] + a[0, 1] * xy[..., 1] + a[0, 2]
        y = a[1, 0] * xy[..., 0] + a[1, 1] * xy[..., 1] + a[1, 2]
        return xp.stack([x, y], axis=-1), depth


Camera = Pinhole | Orthographic | Transformed


def check_camera(camera: Any, name: str) -> None:
    if not hasattr(camera, "project") or not hasattr(camera, "perspective"):
        raise ValueError(f"{name}: expected a Pinhole, Orthographic or Transformed camera, got {camera!r}.")


def project_at_pose(points: Any, reference_pose: tuple[Any, Any], target_pose: tuple[Any, Any], camera: Camera) -> Any:
    """Posed points of the reference frame (..., N, 3) moved to the target head pose and projected: (..., N, 2).

    Poses are (R, t) with posed = R @ local + t; the points are taken back to the face-local frame
    with the reference pose and posed again with the target's. These are the ani render's
    landmarks (`AniRender.landmarks`); numpy in (a data pipeline), numpy out.
    """
    check_camera(camera, "project_at_pose(camera)")
    (r_ref, t_ref), (r_tgt, t_tgt) = reference_pose, target_pose
    return camera.project(apply_rigid(unapply_rigid(points, r_ref, t_ref), r_tgt, t_tgt))[0]


def mouth_box(landmarks: Any, height: int, width: int, margin: float = _MOUTH_MARGIN_AT_256) -> Any:
    """(..., 68, 2) pixel landmarks -> (..., 4) box (x0, y0, x1, y1) around points 48, 50, 51, 54, 57.

    The box is grown by `margin` pixels at 256 px, scaled with the image (margin * W / 256
    across, margin * H / 256 down), and clamped to the pixel centres [0, W - 1] x [0, H - 1].
    """
    xp = namespace(landmarks)
    p = xp.asarray(landmarks)
    if p.ndim < 2 or p.shape[-2:] != (68, 2):
        raise ValueError(f"mouth_box(landmarks): expected (..., 68, 2) pixel landmarks, got shape {p.shape}.")
    pts = p[..., list(MOUTH_BOX_INDICES), :]
    mx, my = margin * width / 256.0, margin * height / 256.0
    lo = xp.min(pts, axis=-2)
    hi = xp.max(pts, axis=-2)
    x0 = xp.clip(lo[..., 0] - mx, 0, width - 1)
    y0 = xp.clip(lo[..., 1] - my, 0, height - 1)
    x1 = xp.clip(hi[..., 0] + mx, 0, width - 1)
    y1 = xp.clip(hi[..., 1] + my, 0, height - 1)
    return xp.stack([x0, y0, x1, y1], axis=-1)


def mouth_box_mask(landmarks: Any, height: int, width: int, margin: float = _MOUTH_MARGIN_AT_256) -> Any:
    """(..., 68, 2) pixel landmarks -> (..., H, W) bool, True on pixel centres inside `mouth_box`.

    Used to black out the mouth of the warping reference and of the ani image in training, so
    the generator has to synthesise the mouth instead of copying it.
    """
    xp = namespace(landmarks)
    box = mouth_box(landmarks, height, width, margin)
    cols = xp.arange(width, dtype=box.dtype)
    rows = xp.arange(height, dtype=box.dtype)
    x0, y0, x1, y1 = (box[..., k, None] for k in range(4))
    in_x = (cols >= x0) & (cols <= x1)  # (..., W)
    in_y = (rows >= y0) & (rows <= y1)  # (..., H)
    return in_y[..., :, None] & in_x[..., None, :]
