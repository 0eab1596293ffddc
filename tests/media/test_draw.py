import math

import cv2
import numpy as np
import pytest
from PIL import Image

from macl_jax.media.draw import (
    LANDMARK_GROUPS_68,
    contact_sheet,
    landmark_raster,
    overlay_landmarks,
    write_png,
)

WHITE = (255, 255, 255)
COLOURS = {name: rgb for name, _, _, _, rgb in LANDMARK_GROUPS_68}
OFF = -1000.0  # parks unused landmarks far off the canvas: their segments draw nothing


# ----------------------------------------------------------------------------- slow reference
# Scalar, pixel-by-pixel statement of the thickness-2 OpenCV line rule that draw.py vectorises
# (see the draw module docstring): plus-shaped caps, fixed-point outline, scanline interior.

ONE, HALF = 1 << 16, 1 << 15


def c_div(a, b):
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def clip(w, h, x1, y1, x2, y2):
    right, bottom = w - 1, h - 1

    def code(x, y):
        return (x < 0) + 2 * (x > right) + 4 * (y < 0) + 8 * (y > bottom)

    c1, c2 = code(x1, y1), code(x2, y2)
    if not (c1 & c2) and (c1 | c2):
        if c1 & 12:
            a = 0 if c1 < 8 else bottom
            x1 += c_div((a - y1) * (x2 - x1), y2 - y1)
            y1, c1 = a, (x1 < 0) + 2 * (x1 > right)
        if c2 & 12:
            a = 0 if c2 < 8 else bottom
            x2 += c_div((a - y2) * (x2 - x1), y2 - y1)
            y2, c2 = a, (x2 < 0) + 2 * (x2 > right)
        if not (c1 & c2) and (c1 | c2):
            if c1:
                a = 0 if c1 == 1 else right
                y1 += c_div((a - x1) * (y2 - y1), x2 - x1)
                x1, c1 = a, 0
            if c2:
                a = 0 if c2 == 1 else right
                y2 += c_div((a - x2) * (y2 - y1), x2 - x1)
                x2, c2 = a, 0
    return not (c1 | c2), x1, y1, x2, y2


def put(mask, x, y):
    if 0 <= y < mask.shape[0] and 0 <= x < mask.shape[1]:
        mask[y, x] = True


def outline_edge(mask, ax, ay, bx, by):
    h, w = mask.shape
    ok, ax, ay, bx, by = clip(w * ONE, h * ONE, ax, ay, bx, by)
    if not ok:
        return
    if abs(bx - ax) > abs(by - ay):
        if bx < ax:
            ax, ay, bx, by = bx, by, ax, ay
        slope = c_div((by - ay) * ONE, abs(bx - ax) | 1)
        put(mask, (bx + HALF) >> 16, (by + HALF) >> 16)
        x, yf = (ax + HALF) >> 16, ay + HALF
        for _ in range(((bx - ax) >> 16) + 1):
            put(mask, x, yf >> 16)
            x, yf = x + 1, yf + slope
    else:
        if by < ay:
            ax, ay, bx, by = bx, by, ax, ay
        slope = c_div((bx - ax) * ONE, abs(by - ay) | 1)
        put(mask, (bx + HALF) >> 16, (by + HALF) >> 16)
        xf, y = ax + HALF, (ay + HALF) >> 16
        for _ in range(((by - ay) >> 16) + 1):
            put(mask, xf >> 16, y)
            xf, y = xf + slope, y + 1


def fill_quad(mask, v):
    h, w = mask.shape
    for i in range(4):
        outline_edge(mask, *v[i - 1], *v[i])
    xs, ys = [p[0] for p in v], [p[1] for p in v]
    top = min(range(4), key=lambda i: (ys[i], i))
    xmin, xmax = (min(xs) + HALF) >> 16, (max(xs) + HALF) >> 16
    ymin, ymax = (min(ys) + HALF) >> 16, (max(ys) + HALF) >> 16
    if xmax < 0 or ymax < 0 or xmin >= w or ymin >= h:
        return
    ymax = min(ymax, h - 1)
    chains = [dict(idx=top, step=1, end=ymin, x=0, dx=0), dict(idx=top, step=3, end=ymin, x=0, dx=0)]
    budget = 4
    y = ymin
    while True:
        for ch in chains:
            if y < ch["end"]:
                continue
            prev, cur = ch["idx"], (ch["idx"] + ch["step"]) % 4
            while True:
                budget -= 1
                if budget < 0:
                    break
                row = (v[cur][1] + HALF) >> 16
                if row > y:
                    ch.update(end=row, x=v[prev][0], idx=cur)
                    ch["dx"] = c_div((v[cur][0] - v[prev][0]) * 2 + (row - y), 2 * (row - y))
                    break
                prev, cur = cur, (cur + ch["step"]) % 4
        if budget < 0:
            return
        if y >= 0:
            lo, hi = sorted((chains[0]["x"], chains[1]["x"]))
            x1, x2 = (lo + HALF) >> 16, (hi + HALF) >> 16
            if x2 >= 0 and x1 < w:
                mask[y, max(x1, 0) : min(x2, w - 1) + 1] = True
        for ch in chains:
            ch["x"] += ch["dx"]
        y += 1
        if y > ymax:
            return


def thick_line_reference(mask, x0, y0, x1, y1):
    length = math.hypot(x0 - x1, y1 - y0)
    if length > 0:
        nx = int(np.rint((y1 - y0) * ONE / length))
        ny = int(np.rint((x0 - x1) * ONE / length))
        p0, p1 = (x0 * ONE, y0 * ONE), (x1 * ONE, y1 * ONE)
        fill_quad(mask, [(p0[0] + nx, p0[1] + ny), (p0[0] - nx, p0[1] - ny),
                         (p1[0] - nx, p1[1] - ny), (p1[0] + nx, p1[1] + ny)])
    for cx, cy in ((x0, y0), (x1, y1)):
        for dx, dy in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
            put(mask, cx + dx, cy + dy)


def raster_reference(landmarks, size=256):
    image = np.full((size, size, 3), 255, np.uint8)
    points = [(int(x), int(y)) for x, y in landmarks]  # int() truncates toward zero
    for _, first, last, closed, rgb in LANDMARK_GROUPS_68:
        pairs = [(i, i + 1) for i in range(first, last)] + ([(last, first)] if closed else [])
        mask = np.zeros((size, size), bool)
        for a, b in pairs:
            thick_line_reference(mask, *points[a], *points[b])
        image[mask] = rgb
    return image


def random_landmarks(rng, kind, count):
    if kind == "face":
        return rng.uniform(70, 186, (1, 68, 2)) + rng.normal(0, 6, (count, 68, 2))
    if kind == "uniform":
        return rng.uniform(0, 256, (count, 68, 2))
    return rng.uniform(-60, 316, (count, 68, 2))  # segments crossing and leaving the canvas


def parked(**groups):
    """68 landmarks off-canvas except the given groups, set to the given (n, 2) points."""
    lm = np.full((68, 2), OFF)
    for name, points in groups.items():
        first, last = next((f, l) for n, f, l, _, _ in LANDMARK_GROUPS_68 if n == name)
        lm[first : last + 1] = points
    return lm


def horizontal(first_x, last_x, y, n):
    return np.stack([np.linspace(first_x, last_x, n), np.full(n, float(y))], 1)


# ----------------------------------------------------------------------------- raster tests


@pytest.mark.parametrize("kind", ["face", "uniform", "off_canvas"])
def test_raster_equals_slow_reference(kind):
    rng = np.random.default_rng({"face": 0, "uniform": 1, "off_canvas": 2}[kind])
    landmarks = random_landmarks(rng, kind, 8)
    fast = landmark_raster(landmarks)
    for i in range(len(landmarks)):
        np.testing.assert_array_equal(fast[i], raster_reference(landmarks[i]))
    small = landmark_raster(landmarks[0] * 0.25, size=64)
    np.testing.assert_array_equal(small, raster_reference(landmarks[0] * 0.25, size=64))


@pytest.mark.parametrize("kind", ["face", "uniform", "off_canvas"])
def test_raster_matches_opencv(kind):
    # The dev extra pins OpenCV 4.10-4.11 (pyproject.toml): from 4.13 on, cv2.line draws segments
    # with an end point off the canvas differently, and every off_canvas raster here would differ.
    assert cv2.__version__.startswith(("4.10.", "4.11.")), cv2.__version__
    landmarks = random_landmarks(np.random.default_rng({"face": 3, "uniform": 4, "off_canvas": 5}[kind]), kind, 6)
    for lm in landmarks:
        image = np.full((256, 256, 3), 255, np.uint8)
        p = lm.astype(int)
        for _, first, last, closed, rgb in LANDMARK_GROUPS_68:
            pairs = [(i, i + 1) for i in range(first, last)] + ([(last, first)] if closed else [])
            for a, b in pairs:
                cv2.line(image, tuple(map(int, p[a])), tuple(map(int, p[b])), rgb[::-1], 2)
        np.testing.assert_array_equal(landmark_raster(lm), image[..., ::-1])


def test_group_colours_along_known_segments():
    # Each group on its own horizontal line; closed groups fold back onto the same line.
    rows = {name: 20 + 28 * g for g, (name, *_) in enumerate(LANDMARK_GROUPS_68)}
    lm = parked(**{name: horizontal(30, 220, rows[name], last - first + 1)
                   for name, first, last, _, _ in LANDMARK_GROUPS_68})
    image = landmark_raster(lm)
    for name, rgb in COLOURS.items():
        y = rows[name]
        for x in (40, 125, 210):
            assert tuple(image[y, x]) == rgb, (name, x)
        assert tuple(image[y - 3, 125]) == WHITE and tuple(image[y + 3, 125]) == WHITE
    assert tuple(image[5, 5]) == WHITE


def test_truncation_toward_zero():
    # A single point drawn as a zero-length segment is OpenCV's radius-1 end cap: a plus.
    image = landmark_raster(parked(jaw=np.tile([10.9, 50.7], (17, 1))))
    painted = np.argwhere((image != 255).any(-1))
    assert sorted(map(tuple, painted)) == sorted([(50, 10), (50, 9), (50, 11), (49, 10), (51, 10)])
    # -0.5 truncates to 0 (rounding down would give -1 and only the right arm would show).
    image = landmark_raster(parked(jaw=np.tile([-0.5, 30.2], (17, 1))))
    painted = np.argwhere((image != 255).any(-1))
    assert sorted(map(tuple, painted)) == sorted([(30, 0), (30, 1), (29, 0), (31, 0)])


def test_line_thickness_and_end_caps():
    image = landmark_raster(parked(jaw=horizontal(50, 210, 100, 17)))
    ink = (image != 255).any(-1)
    for x in (60, 128, 200):
        assert np.flatnonzero(ink[:, x]).tolist() == [99, 100, 101]  # 3 px across
    assert ink[100, 49] and not ink[100, 48] and not ink[99, 49]  # plus-shaped cap
    assert ink[100, 211] and not ink[100, 212]
    vertical = landmark_raster(parked(nose=np.stack([np.full(9, 77.0), np.linspace(40, 200, 9)], 1)))
    ink = (vertical != 255).any(-1)
    assert np.flatnonzero(ink[120]).tolist() == [76, 77, 78]
    # A 45-degree line is about 2*sqrt(2) px wide measured along a row.
    diagonal = landmark_raster(parked(jaw=np.stack([np.linspace(40, 200, 17)] * 2, 1)))
    assert 2 <= np.count_nonzero((diagonal[120] != 255).any(-1)) <= 5


def test_later_groups_overwrite_earlier():
    jaw = horizontal(20, 236, 128, 17)
    nose = np.stack([np.full(9, 128.0), np.linspace(60, 200, 9)], 1)
    outer_lip = np.stack([np.linspace(100, 156, 12), np.full(12, 128.0)], 1)  # on top of the jaw
    assert tuple(landmark_raster(parked(jaw=jaw, nose=nose))[128, 128]) == COLOURS["nose"]
    image = landmark_raster(parked(jaw=jaw, nose=nose, outer_lip=outer_lip))
    assert tuple(image[128, 128]) == COLOURS["outer_lip"]
    assert tuple(image[128, 60]) == COLOURS["jaw"] and tuple(image[80, 128]) == COLOURS["nose"]


def test_batches_match_single_frames_across_chunks():
    landmarks = random_landmarks(np.random.default_rng(4), "face", 70).reshape(7, 10, 68, 2)
    batch = landmark_raster(landmarks)
    assert batch.shape == (7, 10, 256, 256, 3)
    for i, j in [(0, 0), (6, 3), (6, 9)]:  # frames 63 and 69 sit in the second 64-frame chunk
        np.testing.assert_array_equal(batch[i, j], landmark_raster(landmarks[i, j]))


def test_raster_input_checks_and_far_points():
    assert np.all(landmark_raster(np.full((68, 2), 1e9)) == 255)  # clipped, not an error
    with pytest.raises(ValueError, match="NaN"):
        landmark_raster(np.full((68, 2), np.nan))
    with pytest.raises(ValueError, match=r"\(\.\.\., 68, 2\)"):
        landmark_raster(np.zeros((98, 2)))
    with pytest.raises(ValueError, match="size"):
        landmark_raster(np.zeros((68, 2)), size=0)


# ----------------------------------------------------------------------------- previews


def segment_distance(px, py, a, b):
    """Distance from pixel centres (px, py) to segment a-b (float arrays)."""
    d = b - a
    denom = max(float(d @ d), 1e-12)
    t = np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / denom, 0, 1)
    return np.hypot(px - (a[0] + t * d[0]), py - (a[1] + t * d[1]))


def test_overlay_changes_only_pixels_near_landmarks_and_lines():
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 200, (2, 96, 112, 3), dtype=np.uint8)
    landmarks = rng.uniform(10, 90, (1, 68, 2)) + rng.normal(0, 2, (2, 68, 2))
    original = frames.copy()
    out = overlay_landmarks(frames, landmarks, color=(0, 255, 0), radius=1)
    np.testing.assert_array_equal(frames, original)  # input untouched
    yy, xx = np.mgrid[:96, :112].astype(float)
    for f in range(2):
        p = landmarks[f].astype(int).astype(float)
        near = np.zeros((96, 112), bool)
        for _, first, last, closed, _ in LANDMARK_GROUPS_68:
            pairs = [(i, i + 1) for i in range(first, last)] + ([(last, first)] if closed else [])
            for a, b in pairs:
                near |= segment_distance(xx, yy, p[a], p[b]) <= 1.5  # 1-px line, 8-connected
        for x, y in p:
            near |= np.hypot(xx - x, yy - y) <= 1.5  # radius 1 dot (+0.5 px)
        changed = (out[f] != original[f]).any(-1)
        assert not np.any(changed & ~near)
        assert np.all(out[f][p[:, 1].astype(int), p[:, 0].astype(int)] == (0, 255, 0))


def test_overlay_dots_only_for_other_layouts():
    frames = np.zeros((40, 40, 3), np.uint8)
    out = overlay_landmarks(frames, np.array([[5.0, 5.0], [30.7, 20.2]]), color=(255, 0, 0), radius=2)
    ink = (out != 0).any(-1)
    expected = np.zeros((40, 40), bool)
    yy, xx = np.mgrid[:40, :40]
    for x, y in [(5, 5), (30, 20)]:
        expected |= (xx - x) ** 2 + (yy - y) ** 2 <= 2.5**2
    np.testing.assert_array_equal(ink, expected)
    with pytest.raises(ValueError, match="batch shape"):
        overlay_landmarks(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((3, 68, 2)))


def test_contact_sheet_layout():
    rng = np.random.default_rng(6)
    frames = rng.integers(0, 256, (5, 7, 9, 3), dtype=np.uint8)
    sheet = contact_sheet(frames, columns=2, pad=3)
    assert sheet.shape == (3 + 3 * (7 + 3), 3 + 2 * (9 + 3), 3)
    covered = np.zeros(sheet.shape[:2], bool)
    for i in range(5):
        r, c = divmod(i, 2)
        top, left = 3 + r * 10, 3 + c * 12
        np.testing.assert_array_equal(sheet[top : top + 7, left : left + 9], frames[i])
        covered[top : top + 7, left : left + 9] = True
    assert np.all(sheet[~covered] == 255)  # gaps and the empty sixth slot are background

    labelled = contact_sheet(frames, columns=3, labels=[f"f{i}" for i in range(5)], pad=2)
    rows = 2
    label_h = (labelled.shape[0] - 2) // rows - 7 - 2
    assert labelled.shape[1] == 2 + 3 * (9 + 2)
    for i in range(5):
        r, c = divmod(i, 3)
        top, left = 2 + r * (7 + 2 + label_h) + label_h, 2 + c * (9 + 2)
        np.testing.assert_array_equal(labelled[top : top + 7, left : left + 9], frames[i])
    if label_h:  # Pillow's default font available: the strip above tile 0 holds dark text
        assert labelled[2 : 2 + label_h, 2 : 2 + 9].min() < 128


def test_write_png_round_trip_and_atomic(tmp_path):
    image = np.random.default_rng(7).integers(0, 256, (12, 17, 3), dtype=np.uint8)
    path = write_png(tmp_path / "sub" / "sheet.png", image)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="uint8"):
        write_png(path, image.astype(np.float32))
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == ["sheet.png"]
