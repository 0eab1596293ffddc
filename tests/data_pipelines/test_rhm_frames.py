"""RHMFrames on a small synthetic clip: sampling ranges, evaluation determinism, the motion matcher,
the mouth box and the crop / flip augmentation (images, 2-D and 3-D landmarks and poses agree)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from data_pipelines.synthtalk import face
from macl_jax.geometry.camera import MOUTH_BOX_INDICES
from data_pipelines.windows import FLIP_68, EvaluationWindows, RHMFrames, decode_frames, make_window
from macl_jax.geometry.motion_match import match_reference

STORED = 64
NUM_FRAMES = 40  # references from frames 0-9, targets from 10-39
DOT = 36  # landmark marked by a blue dot in every frame


def _clip(num_frames=NUM_FRAMES, seed=0):
    """SynthTalk's mean face under random head poses, projected by its camera; frame t has red = 4 t
    (to identify it), a green ramp left to right, and a blue dot on landmark 36."""
    rng = np.random.default_rng(seed)
    rotation = face.euler_to_rotation(rng.uniform(-0.5, 0.5, num_frames), rng.uniform(-0.2, 0.2, num_frames),
                                      rng.uniform(-0.1, 0.1, num_frames))
    translation = np.zeros((num_frames, 3))
    translation[:, 0] = rng.uniform(-0.2, 0.2, num_frames)
    posed = face.apply_pose(np.broadcast_to(face.mean_shape(), (num_frames, 68, 3)), rotation, translation)
    landmarks = face.project(posed, STORED)
    frames = []
    yy, xx = np.mgrid[:STORED, :STORED]
    for t in range(num_frames):
        image = np.zeros((STORED, STORED, 3), np.uint8)
        image[..., 0] = 4 * t
        image[..., 1] = np.linspace(0, 200, STORED).astype(np.uint8)[None]
        x, y = landmarks[t, DOT]
        image[..., 2] = np.where((np.abs(xx - x) <= 1.5) & (np.abs(yy - y) <= 1.5), 255, 0)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=95, subsampling=0)
        frames.append(buffer.getvalue())
    return {
        "clip_id": b"synthetic/rhm/0000", "speaker": np.int32(3), "emotion": np.int64(0), "intensity": np.int32(0),
        "frames": np.array(frames, dtype=object), "landmarks_2d": landmarks.astype(np.float32),
        "landmarks_3d": posed.astype(np.float32), "head_rotation": rotation.astype(np.float32),
        "head_translation": translation.astype(np.float32),
    }


@pytest.fixture(scope="module")
def clip():
    return _clip()


def _distance(clip, refs, target):
    rv = Rotation.from_matrix(np.asarray(clip["head_rotation"], np.float64)).as_rotvec()
    return np.abs(rv[refs] - rv[target]).mean(axis=1)


def test_references_come_from_the_first_quarter_and_the_target_from_the_rest(clip):
    window = RHMFrames(num_refs=8, size=16)
    stored = decode_frames(clip["frames"], np.arange(NUM_FRAMES), size=16)
    targets = set()
    for seed in range(30):
        ex = window(clip, np.random.default_rng(seed))
        refs, target = ex["ref_indices"], int(ex["target_index"])
        assert len(set(refs.tolist())) == 8 and refs.min() >= 0 and refs.max() < 10
        assert 10 <= target < NUM_FRAMES
        targets.add(target)
        np.testing.assert_array_equal(ex["ref_images"], stored[refs])
        np.testing.assert_array_equal(ex["target_image"], stored[target])
        # Landmarks follow the resize (pixel centres at integers).
        want = (clip["landmarks_2d"][target] + 0.5) * 16 / STORED - 0.5
        np.testing.assert_allclose(ex["target_landmarks"], want, atol=1e-5)
        np.testing.assert_array_equal(ex["ref_rotation"], clip["head_rotation"][refs])
        assert ex["ref_maps"].shape == (8, 16, 16, 1) and ex["target_map"].max() == 255
    assert len(targets) > 10
    assert RHMFrames(num_refs=8).frames_needed == 32  # int(32 / 4) = 8 references, 24 targets
    with pytest.raises(ValueError, match="synthetic/rhm/0000.*31 frames"):
        window(dict(clip, frames=clip["frames"][:31]), np.random.default_rng(0))
    missing = clip["landmarks_2d"].copy()
    missing[:] = np.nan
    with pytest.raises(ValueError, match="no 2-D landmarks"):
        window(dict(clip, landmarks_2d=missing), np.random.default_rng(0))


def test_evaluation_is_fixed_and_warps_the_nearest_pose(clip):
    window = make_window("rhm", num_refs=4, size=16, train=False, augment=True)  # no augmentation at eval
    a, b = window(clip, np.random.default_rng(0)), window(clip, np.random.default_rng(99))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    np.testing.assert_array_equal(a["ref_indices"], [0, 3, 6, 9])
    assert int(a["target_index"]) == 25 and not a["flipped"]
    assert int(a["warp_ref"]) == int(np.argmin(_distance(clip, a["ref_indices"], 25)))
    assert len(EvaluationWindows([clip], window)) == 1
    with pytest.raises(ValueError, match="deterministic"):
        EvaluationWindows([clip], RHMFrames())


def test_training_matcher_picks_the_farthest_pose_three_quarters_of_the_time(clip):
    rv = np.asarray(clip["head_rotation"], np.float64)
    refs, target = np.arange(8), 20
    cost = _distance(clip, refs, target)
    rng = np.random.default_rng(0)
    picks = np.array([match_reference(rv[refs], rv[target], train=True, rng=rng) for _ in range(4000)])
    # Farthest with p = 0.75, else uniform over all 8 (the farthest included): 0.75 + 0.25 / 8.
    assert np.mean(picks == np.argmax(cost)) == pytest.approx(0.78125, abs=0.03)
    assert set(picks.tolist()) == set(range(8))
    assert match_reference(rv[refs], rv[target], train=False) == int(np.argmin(cost))
    # Through the transform: the same rule on the example's own references.
    window = RHMFrames(size=16)
    hits = []
    for seed in range(200):
        ex = window(clip, np.random.default_rng(seed))
        hits.append(int(ex["warp_ref"]) == int(np.argmax(_distance(clip, ex["ref_indices"], int(ex["target_index"])))))
    assert np.mean(hits) == pytest.approx(0.78125, abs=0.09)
    never = [int(RHMFrames(size=16, worst_ref_prob=0.0)(clip, np.random.default_rng(s))["warp_ref"]) for s in range(40)]
    assert len(set(never)) > 4


def test_mouth_box_covers_the_mouth_and_blacks_out_the_warping_reference(clip):
    for augment, size in ((False, 64), (True, 48)):
        for seed in range(6):
            ex = RHMFrames(size=size, augment=augment)(clip, np.random.default_rng(seed))
            margin = 5 * size / 256
            for pts, box in [*zip(ex["ref_landmarks"], ex["ref_mouth_boxes"]), (ex["target_landmarks"], ex["target_mouth_box"])]:
                mouth = pts[list(MOUTH_BOX_INDICES)]
                x0, y0, x1, y1 = box
                assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
                lo = np.maximum(mouth.min(0) - margin, 0)
                hi = np.minimum(mouth.max(0) + margin, size - 1)
                # The pixels whose centres lie within the margin of the mouth points (ends exclusive).
                assert np.all(np.array([x0, y0]) >= lo) and np.all(np.array([x0, y0]) - 1 < lo)
                assert np.all(np.array([x1, y1]) - 1 <= hi) and np.all(np.array([x1, y1]) > hi)
            w = int(ex["warp_ref"])
            mask = ex["warp_ref_mouth_mask"][..., 0].astype(bool)
            x0, y0, x1, y1 = ex["ref_mouth_boxes"][w]
            assert mask.sum() == (x1 - x0) * (y1 - y0) and mask[y0:y1, x0:x1].all()
            assert (ex["warp_ref_image"][mask] == 0).all()
            np.testing.assert_array_equal(ex["warp_ref_image"][~mask], ex["ref_images"][w][~mask])
    unmasked = RHMFrames(size=16, mask_mouth=False)(clip, np.random.default_rng(0))
    np.testing.assert_array_equal(unmasked["warp_ref_image"], unmasked["ref_images"][int(unmasked["warp_ref"])])


def _blob_centre(channel):
    w = np.where(channel > 100, channel.astype(np.float64), 0.0)
    yy, xx = np.mgrid[: channel.shape[0], : channel.shape[1]]
    return np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum()


def test_crop_and_flip_keep_images_landmarks_and_3d_consistent(clip):
    np.testing.assert_array_equal(FLIP_68, face.MIRROR)  # an independent statement of the iBUG mirror
    mean = face.mean_shape()
    assert np.allclose(mean[FLIP_68] * [-1, 1, 1], mean, atol=1e-6)  # the synthetic face is symmetric
    window = RHMFrames(num_refs=2, size=STORED, augment=True)
    seen = set()
    for seed in range(12):
        ex = window(clip, np.random.default_rng(seed))
        flipped = bool(ex["flipped"])
        seen.add(flipped)
        lm = ex["target_landmarks"]
        # The dot painted on the subject's landmark 36 is now under index 45 if mirrored.
        np.testing.assert_allclose(_blob_centre(ex["target_image"][..., 2]), lm[45 if flipped else DOT], atol=1.0)
        # Indices keep their meaning: the subject's right eye corner (36) stays left of 45.
        assert lm[36, 0] < lm[45, 0] and ex["ref_landmarks"][0, 36, 0] < ex["ref_landmarks"][0, 45, 0]
        # Landmark boxes scale with U(0.8, 1.2): the face spans about half the crop.
        width = lm[:, 0].max() - lm[:, 0].min()
        assert 0.4 * STORED < width < 0.65 * STORED
        # 3-D points project (with the dataset's camera) and map through the transform onto the
        # 2-D landmarks; the mirrored pose still explains them.
        for pts3, pts2, affine, rot, trans in (
            (ex["target_landmarks_3d"], lm, ex["target_transform"], ex["target_rotation"], ex["target_translation"]),
            (ex["ref_landmarks_3d"][1], ex["ref_landmarks"][1], ex["ref_transform"], ex["ref_rotation"][1], ex["ref_translation"][1]),
        ):
            projected = face.project(pts3.astype(np.float64), STORED)
            np.testing.assert_allclose(projected @ affine[:, :2].T + affine[:, 2], pts2, atol=2e-3)
            np.testing.assert_allclose(mean @ rot.T + trans, pts3, atol=1e-4)
            assert np.linalg.det(rot) == pytest.approx(1.0, abs=1e-5)
    assert seen == {True, False}
