"""SynthTalk renderer: colours sit on the landmarks, anti-aliasing, pose, determinism, dlib."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from matplotlib.path import Path

from data_pipelines.synthtalk import face, render

_LUMA = np.array([0.299, 0.587, 0.114])


def _appearance(seed: int, **changes) -> render.Appearance:
    return dataclasses.replace(render.sample_appearance(np.random.default_rng(seed)), **changes)


def _clip(visemes, expression=None, euler=None, identity=None):
    vis = np.atleast_2d(np.asarray(visemes, np.float64))
    n = len(vis)
    expr = np.zeros((n, 5)) if expression is None else np.atleast_2d(expression)
    euler = np.zeros((n, 3)) if euler is None else np.atleast_2d(euler)
    neutral = face.identity_shape(np.zeros(5) if identity is None else identity)
    local = face.articulate(neutral, vis, expr)
    rot = face.euler_to_rotation(euler[:, 0], euler[:, 1], euler[:, 2])
    tr = np.zeros((n, 3))
    return local, rot, tr


def _render(app, clip, size):
    local, rot, tr = clip
    frames = render.render_frames(local, rot, tr, app, size)
    lm = face.project(face.apply_pose(local, rot, tr), size)
    return frames.astype(np.float64) / 255.0, lm


def _at(img, point):
    x, y = np.round(point).astype(int)
    return img[y, x]


def _redness(rgb):
    return rgb[0] / (rgb.sum() + 1e-9)


@pytest.fixture(scope="module")
def open_and_closed():
    """Frontal frames at 256 px: mouth closed (0) and open (1), for three appearances."""
    clip = _clip([[0, 0, 0, 0], [0.8, 0, 0, 0]])
    return [(_appearance(seed), *_render(_appearance(seed), clip, 256)) for seed in (0, 4, 7)]


def test_render_is_deterministic_and_frame_independent():
    clip = _clip([[0.3, 0.2, 0, 0], [0.7, 0, 0.5, 0]], euler=[[0.2, 0.1, 0.0], [-0.3, 0.0, 0.1]])
    a = render.render_frames(*clip, _appearance(3), 128)
    b = render.render_frames(*clip, _appearance(3), 128)
    assert a.dtype == np.uint8 and a.shape == (2, 128, 128, 3)
    assert a.tobytes() == b.tobytes()
    # A frame does not depend on the rest of the clip.
    single = render.render_frames(clip[0][1:], clip[1][1:], clip[2][1:], _appearance(3), 128)
    assert single.tobytes() == a[1:].tobytes()


def test_lips_are_lip_coloured_and_distinct_from_skin(open_and_closed):
    for app, frames, lm in open_and_closed:
        img, p = frames[0], lm[0]
        cheek = _at(img, 0.5 * (p[3] + p[31]))
        for point in (0.5 * (p[51] + p[62]), 0.5 * (p[66] + p[57])):
            lip = _at(img, point)
            assert _redness(lip) > _redness(cheek) + 0.04, (app.skin_rgb, lip, cheek)
            # Nearer to the lip colour than to the skin colour, in chromaticity.
            chroma = lip / lip.sum()
            lip_c = np.array(app.lip_rgb) / sum(app.lip_rgb)
            skin_c = np.array(app.skin_rgb) / sum(app.skin_rgb)
            assert np.linalg.norm(chroma - lip_c) < np.linalg.norm(chroma - skin_c)


def test_open_mouth_interior_is_darker_than_the_lips_and_shows_teeth(open_and_closed):
    for _, frames, lm in open_and_closed:
        img, p = frames[1], lm[1]
        inner = Path(p[60:68])
        rr, cc = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
        inside = inner.contains_points(np.column_stack([cc.ravel(), rr.ravel()])).reshape(rr.shape)
        assert inside.sum() > 100
        luma = img @ _LUMA
        # The middle of the opening (between the upper and the lower teeth) is dark.
        top, bottom = p[62, 1], p[66, 1]
        middle = inside & (rr > top + 0.4 * (bottom - top)) & (rr < top + 0.6 * (bottom - top))
        lip_luma = np.mean([_at(luma, 0.5 * (p[66] + p[57])), _at(luma, 0.5 * (p[51] + p[62]))])
        assert middle.sum() > 20
        assert np.median(luma[middle]) < 0.6 * lip_luma
        # Upper teeth: a bright band just under the upper lip, brighter than any lip pixel.
        teeth = inside & (rr < p[62, 1] + 0.25 * (p[66, 1] - p[62, 1]))
        assert np.percentile(luma[teeth], 90) > max(lip_luma, 0.6)
        # Closed mouth: no teeth in the mouth region.
        closed = frames[0] @ _LUMA
        mouth = Path(lm[0, 48:60]).contains_points(np.column_stack([cc.ravel(), rr.ravel()])).reshape(rr.shape)
        assert closed[mouth].max() < 0.6 * np.percentile(luma[teeth], 90)


def test_sclera_is_brighter_than_skin_and_blink_hides_it():
    clip = _clip(np.zeros((2, 4)), expression=[[0, 0, 0, 0, 0], [0, 0, 0, 0, 1.0]])
    for seed in (0, 1, 2):
        app = _appearance(seed)
        frames, lm = _render(app, clip, 256)
        luma = frames @ _LUMA
        p = lm[0]
        for outer, inner in ((36, 39), (45, 42)):
            sclera_pt = p[outer] + 0.2 * (p[inner] - p[outer])
            cheek = _at(luma[0], 0.5 * (p[3 if outer == 36 else 13] + p[31 if outer == 36 else 35]))
            assert _at(luma[0], sclera_pt) > cheek + 0.1
            assert _at(luma[0], sclera_pt) > _at(luma[1], sclera_pt) + 0.1  # eyelid closed


def test_background_differs_from_skin_and_edges_are_antialiased():
    fractions = []
    for seed in range(4):
        app = _appearance(seed)
        frames, lm = _render(app, _clip(np.zeros((1, 4)), euler=[[0.2, 0.1, 0.05]]), 128)
        img = frames[0]
        skin = np.array(app.skin_rgb)
        for corner in (img[0, 0], img[0, -1], img[-1, 0], img[-1, -1]):
            if not np.allclose(corner, np.array(app.clothing_rgb), atol=0.3):  # lower corners may be clothes
                assert np.abs(corner - skin).sum() > 0.1
        # A flat background makes edge pixels measurable: along each row, the first pixel that
        # is not background must be a mix of background and what is inside.
        flat = dataclasses.replace(app, background_pattern="linear", background_rgb=(app.background_rgb[0],) * 2)
        img = _render(flat, _clip(np.zeros((1, 4)), euler=[[0.2, 0.1, 0.05]]), 128)[0][0]
        bg = np.array(flat.background_rgb[0])
        alphas = []
        for row in range(10, 118):
            is_bg = np.all(np.abs(img[row] - bg) <= 1.0 / 255, axis=-1)
            x0 = int(np.argmin(is_bg))
            if is_bg.all() or x0 == 0 or x0 + 3 >= 128:
                continue
            inner = img[row, x0 + 3]
            d = bg - inner
            if d @ d > (20 / 255) ** 2:
                alphas.append((img[row, x0] - inner) @ d / (d @ d))
        alphas = np.array(alphas)
        assert len(alphas) > 50
        fractions.append(np.mean((alphas > 0.1) & (alphas < 0.9)))
    # An aliased renderer would give 0: edge pixels equal to the inside.
    assert min(fractions) > 0.5, fractions


def test_yaw_moves_the_rendered_nose_with_the_landmarks():
    app = _appearance(1)
    frames, lm = _render(app, _clip(np.zeros((3, 4)), euler=[[0, 0, 0], [0.3, 0, 0], [-0.3, 0, 0]]), 256)
    luma = frames @ _LUMA
    centres = []
    for f in range(3):
        c = lm[f, 31:36]
        x0, y0 = np.floor(c.min(axis=0) - 4).astype(int)
        x1, y1 = np.ceil(c.max(axis=0) + 4).astype(int)
        window = luma[f, y0:y1, x0:x1]
        ys, xs = np.nonzero(window < 0.55 * np.median(window))  # the nostrils
        assert len(xs) > 5
        centres.append(xs.mean() + x0)
    assert lm[1, 30, 0] > lm[0, 30, 0] + 15 and lm[2, 30, 0] < lm[0, 30, 0] - 15  # positive yaw: right
    for f in (1, 2):
        shift = centres[f] - centres[0]
        assert shift == pytest.approx(lm[f, 33, 0] - lm[0, 33, 0], abs=3.0)


@pytest.mark.parametrize("size", [32, 64, 100, 128, 256])
def test_sizes_render_the_same_picture(size):
    app = _appearance(2)
    clip = _clip([[0.5, 0, 0, 0]], euler=[[0.2, 0.1, 0.0]])
    img = render.render_frames(*clip, app, size)[0].astype(np.float64)
    assert img.shape == (size, size, 3)
    if size % 2 == 0:
        # Box-downsampling a render at twice the size gives (nearly) the same image.
        big = render.render_frames(*clip, app, 2 * size)[0].astype(np.float64)
        small = big.reshape(size, 2, size, 2, 3).mean(axis=(1, 3))
        assert np.abs(small - img).mean() < 3.0
    other_pose = render.render_frames(*_clip([[0.5, 0, 0, 0]], euler=[[-0.2, 0.1, 0.0]]), app, size)[0]
    assert np.abs(other_pose - img).mean() > 4.0


def test_sample_appearance_is_reproducible_and_diverse():
    a = render.sample_appearance(np.random.default_rng(11))
    assert a == render.sample_appearance(np.random.default_rng(11))
    rng = np.random.default_rng(0)
    apps = [render.sample_appearance(rng) for _ in range(300)]
    skin_luma = np.array([np.dot(x.skin_rgb, _LUMA) for x in apps])
    assert skin_luma.min() < 0.3 and skin_luma.max() > 0.75
    styles = {x.hair_style for x in apps}
    assert styles == set(render.HAIR_STYLES)
    assert 0.02 < np.mean([x.hair_style == "bald" for x in apps]) < 0.15
    grey = [x for x in apps if np.ptp(x.hair_rgb) < 0.05 and np.mean(x.hair_rgb) > 0.4]
    assert 0 < len(grey) < 0.2 * len(apps)
    assert {x.background_pattern for x in apps} == set(render.BACKGROUND_PATTERNS)
    for x in apps:
        assert np.mean(x.brow_rgb) < np.mean(x.hair_rgb) or x.hair_style == "bald"
        for colour in x.background_rgb:
            assert np.abs(np.array(colour) - np.array(x.skin_rgb)).sum() > 0.3


def test_poses_and_faces_beyond_the_ranges_still_render():
    rng = np.random.default_rng(5)
    for size in (33, 100):
        n = 6
        vis = np.column_stack([rng.uniform(0, 1, n), rng.uniform(-1, 1, n), rng.uniform(0, 1, n), rng.uniform(0, 1, n)])
        expr = np.column_stack([rng.uniform(-1, 1, (n, 1)), rng.uniform(0, 1, (n, 2)), rng.uniform(-1, 1, (n, 2))])
        local = face.articulate(face.identity_shape(rng.uniform(-3, 3, 5)), vis, expr)
        angles = np.deg2rad(rng.uniform(-1, 1, (n, 3)) * [60.0, 45.0, 40.0])
        rot = face.euler_to_rotation(angles[:, 0], angles[:, 1], angles[:, 2])
        tr = rng.uniform(-0.8, 0.8, (n, 3))
        app = render.sample_appearance(rng)
        as32 = [x.astype(np.float32) for x in (local, rot, tr)]  # as the clip builder passes them
        frames = render.render_frames(*as32, app, size)
        assert frames.shape == (n, size, size, 3)
        background = render.render_frames(local[:1], rot[:1], np.array([[50.0, 0.0, 0.0]]), app, size)[0]
        assert np.all(np.abs(frames.astype(int) - background).mean(axis=(1, 2, 3)) > 5)


def test_render_rejects_bad_arguments():
    local, rot, tr = _clip(np.zeros((2, 4)))
    app = _appearance(0)
    with pytest.raises(ValueError, match="local_points"):
        render.render_frames(local[:, :60], rot, tr, app, 64)
    with pytest.raises(ValueError, match="rotation"):
        render.render_frames(local, rot[:1], tr, app, 64)
    with pytest.raises(ValueError, match="translation"):
        render.render_frames(local, rot, tr[:, :2], app, 64)
    with pytest.raises(ValueError, match="image_size"):
        render.render_frames(local, rot, tr, app, 16)
    with pytest.raises(ValueError, match="appearance"):
        render.render_frames(local, rot, tr, "skin", 64)
    with pytest.raises(ValueError, match="hair_style"):
        _appearance(0, hair_style="mohawk")


def test_dlib_finds_the_faces_and_their_landmarks():
    """dlib's HOG face detector and 68-point predictor, trained on photographs, on rendered faces."""
    import dlib
    import face_recognition_models as models
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(models.pose_predictor_model_location())
    rng = np.random.default_rng(2024)
    n, found, errors = 12, 0, []
    for _ in range(n):
        app = render.sample_appearance(rng)
        identity = np.clip(rng.standard_normal(5), -2.0, 2.0)
        vis = [rng.uniform(0, 0.6), rng.uniform(-0.5, 0.5), rng.uniform(0, 0.5) * (rng.random() < 0.3), 0.0]
        expr = [rng.uniform(-0.5, 0.5), 0.0, rng.uniform(-0.3, 0.5), 0.0, 0.0]
        euler = np.deg2rad(rng.uniform(-1, 1, 3) * [15.0, 10.0, 7.0])
        frames, lm = _render(app, _clip([vis], [expr], [euler], identity), 256)
        image = np.round(frames[0] * 255).astype(np.uint8)
        boxes = detector(image, 1)
        if len(boxes) == 0:
            continue
        found += 1
        box = max(boxes, key=lambda r: r.area())
        shape = predictor(image, box)
        points = np.array([[shape.part(k).x, shape.part(k).y] for k in range(68)], np.float64)
        outer_eye_distance = np.linalg.norm(lm[0, 45] - lm[0, 36])
        errors.append(np.linalg.norm(points - lm[0], axis=1).mean() / outer_eye_distance)
    assert found >= n - 1, f"dlib found {found}/{n} faces"
    # 300-W style error (mean point error / outer eye-corner distance); measured ~0.04.
    assert np.mean(errors) < 0.06 and max(errors) < 0.1, errors
