"""The one-channel landmark edge map of few-shot-vid2vid's face model, as Rhythmic Head Motion uses it.

Unlike `draw.landmark_raster` (MakeItTalk's coloured polylines on white), this map is white
curves on black in one channel, and it closes the face outline over the forehead with 15
synthesised points (the jaw mirrored upwards), so the generator sees the head's extent and not
only the lower face (docs/rhm_training.md#landmark-maps).

Drawing, per part (a polyline of landmark indices): the polyline is cut into 3-point pieces
overlapping by one point; each piece is fitted exactly by a quadratic (a line for 2 points) giving
the coordinate that varies less as a function of the one that varies more, sampled at about one
point per pixel between the piece's end points, truncated to integers, and each sample stamped as
a 2 x 2 block (the pixel and its upper-left neighbours). Pieces bent more sharply than the
authors' cap (|quadratic coefficient| > 1 at 256 px, scaled to the canvas) are skipped, as theirs
are. Samples off the canvas are dropped (the authors clamp them onto the border, drawing stray
lines along the edge). numpy only: runs in grain workers.
"""

from __future__ import annotations

import numpy as np

from macl_jax.geometry.forehead import NUM_FACE_POINTS, add_forehead

# Points 68..82 are the forehead of `geometry.forehead`: the outline continues from point 16 back
# over the forehead to point 0.

EDGE_PARTS: tuple[tuple[int, ...], ...] = (
    (*range(0, 17), *range(68, 83), 0),  # face outline, closed over the synthesised forehead
    tuple(range(17, 22)),  # brows
    tuple(range(22, 27)),
    (28, 31),  # nose bridge, nostrils, back to the bridge
    tuple(range(31, 36)),
    (35, 28),
    (36, 37, 38, 39),  # eyes: upper and lower lids
    (39, 40, 41, 36),
    (42, 43, 44, 45),
    (45, 46, 47, 42),
    tuple(range(48, 55)),  # outer lips: upper and lower
    (54, 55, 56, 57, 58, 59, 48),
    tuple(range(60, 65)),  # inner lips
    (64, 65, 66, 67, 60),
)


def _pieces(parts: tuple[tuple[int, ...], ...]) -> tuple[tuple[int, ...], ...]:
    return tuple(part[i : i + 3] for part in parts for i in range(0, max(1, len(part) - 1), 2))


EDGE_PIECES = _pieces(EDGE_PARTS)

_MAX_SIZE = 4096


def _ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner, k) listing k = 0..counts[i]-1 for every i."""
    owner = np.repeat(np.arange(counts.size), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(owner.size) - starts[owner]


def _piece_samples(pts: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Curve samples of one piece in N frames: pts (N, m, 2), m in (2, 3) -> (frame, x, y) int."""
    n, m = pts.shape[:2]
    step = np.abs(np.diff(pts, axis=1)).max(axis=1)  # (N, 2): largest step in x, in y
    swap = step[:, 0] < step[:, 1]  # y varies more: fit x as a function of y
    u = np.where(swap[:, None], pts[..., 1], pts[..., 0])
    v = np.where(swap[:, None], pts[..., 0], pts[..., 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        line_b = (v[:, -1] - v[:, 0]) / (u[:, -1] - u[:, 0])
        a = np.zeros(n)
        b = line_b
        if m == 3:
            d01 = (v[:, 1] - v[:, 0]) / (u[:, 1] - u[:, 0])
            d12 = (v[:, 2] - v[:, 1]) / (u[:, 2] - u[:, 1])
            qa = (d12 - d01) / (u[:, 2] - u[:, 0])
            qb = d01 - qa * (u[:, 0] + u[:, 1])
            exact = np.isfinite(qa) & np.isfinite(qb)
            # Two points sharing the fitted abscissa: no quadratic through all three; the line
            # through the end points is the natural stand-in.
            a, b = np.where(exact, qa, 0.0), np.where(exact, qb, line_b)
        c = v[:, 0] - a * u[:, 0] ** 2 - b * u[:, 0]
    lo, hi = np.minimum(u[:, 0], u[:, -1]), np.maximum(u[:, 0], u[:, -1])
    # The authors cap |a| at 1 on 256 px canvases; a has units 1/px, so the cap scales with 256/size.
    keep = np.isfinite(b) & np.isfinite(c) & (np.abs(a) <= 256.0 / size)
    lo_c, hi_c = np.maximum(lo, -2.0), np.minimum(hi, size + 1.0)  # only the canvas is sampled
    keep &= hi_c >= lo_c
    counts = np.where(keep, np.round(np.where(keep, hi_c - lo_c, 0.0)), 0).astype(np.int64)
    owner, k = _ragged(counts)
    denom = np.maximum(counts[owner] - 1, 1)
    us = lo_c[owner] + (hi_c - lo_c)[owner] * k / denom
    vs = a[owner] * us**2 + b[owner] * us + c[owner]
    sw = swap[owner]
    x = np.where(sw, vs, us)
    y = np.where(sw, us, vs)
    # Truncation toward zero, as the authors' astype(int).
    return owner, x.astype(np.int64), y.astype(np.int64)


def face_edge_map(landmarks: np.ndarray, size: int) -> np.ndarray:
    """(..., 68, 2) pixel (x, y) landmarks -> uint8 (..., size, size) edge map, 255 on the curves, 0 elsewhere."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= _MAX_SIZE:
        raise ValueError(f"face_edge_map: size must be an integer in [1, {_MAX_SIZE}], got {size!r}")
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim < 2 or lm.shape[-2:] != (68, 2):
        raise ValueError(f"face_edge_map: landmarks must be (..., 68, 2) pixel (x, y), got {lm.shape}")
    lm = add_forehead(lm)
    if not np.all(np.isfinite(lm)):
        raise ValueError("face_edge_map: landmarks contain NaN/Inf")
    batch = lm.shape[:-2]
    flat = lm.reshape(-1, NUM_FACE_POINTS, 2)
    n = flat.shape[0]
    out = np.zeros((n, size, size), np.uint8)
    frames, xs, ys = [], [], []
    for piece in EDGE_PIECES:
        owner, x, y = _piece_samples(flat[:, piece], size)
        frames.append(owner)
        xs.append(x)
        ys.append(y)
    f, x, y = np.concatenate(frames), np.concatenate(xs), np.concatenate(ys)
    for dy in (-1, 0):
        for dx in (-1, 0):
            xx, yy = x + dx, y + dy
            inside = (xx >= 0) & (xx < size) & (yy >= 0) & (yy < size)
            out[f[inside], yy[inside], xx[inside]] = 255
    return out.reshape(*batch, size, size)
