"""Per-video preprocessing: accuracy against the fixtures' known motion, geometry helpers, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from data_pipelines.real import fixtures
from data_pipelines.real import preprocess as pp

OPTIONS = pp.PreprocessOptions(min_frames=20)


def _errors(root: str, rel_truth: str, companion: str | None):
    video = os.path.join(root, rel_truth.replace(".truth.npz", ".mp4"))
    clip = pp.preprocess_video(video, companion and os.path.join(root, companion), OPTIONS)
    truth = fixtures.truth_for_clip(os.path.join(root, rel_truth), clip.crop_box, clip.start_frame, len(clip.frames))
    landmark_error = np.linalg.norm(clip.landmarks - truth["landmarks"], axis=-1)
    # align_2d's angle rotates the face back upright, so it moves against the applied rotation.
    recovered = -np.rad2deg(clip.angle - clip.angle[0])
    applied = truth["angle_deg"] - truth["angle_deg"][0]
    return clip, landmark_error, np.abs(recovered - applied)


def test_landmarks_and_angle_match_the_known_motion(raw_root):
    root = raw_root("voxceleb2")
    manifest = fixtures.load_manifest(root)
    rel = manifest["truth"]["id00012/21Uxsk56VDQ/00001"]
    companion = rel.replace("/mp4/", "/aac/").replace(".truth.npz", ".m4a")
    clip, landmark_error, angle_error = _errors(root, rel, companion)
    assert clip.frames.shape == (30, 256, 256, 3) and clip.audio.shape == (30 * 640,)
    assert np.median(landmark_error) < 3.0, np.median(landmark_error)
    assert angle_error.max() < 2.0, angle_error
    # The applied rotation spans several degrees, so the check is not vacuous.
    assert np.ptp(np.rad2deg(clip.angle)) > 5.0
    # Pose roll from the 27-point fit follows the same rotation.
    roll = np.rad2deg(Rotation.from_matrix(clip.head_rotation.astype(np.float64)).as_euler("YXZ")[:, 2])
    truth = fixtures.truth_for_clip(os.path.join(root, rel), clip.crop_box, clip.start_frame, len(clip.frames))
    assert np.abs((roll - roll[0]) - (truth["angle_deg"] - truth["angle_deg"][0])).max() < 2.0
    assert clip.mel.shape == (30 * 640 // 160 + 1, 80)
    assert 0 <= clip.closed_mouth < 30


def test_resampled_29_97_fps_clip_with_stereo_44k_audio(raw_root):
    root = raw_root("voxceleb2")
    rel = fixtures.load_manifest(root)["truth"]["id00012/21Uxsk56VDQ/00002"]
    companion = rel.replace("/mp4/", "/aac/").replace(".truth.npz", ".m4a")
    clip, landmark_error, angle_error = _errors(root, rel, companion)
    assert {"resampled_fps", "resampled_audio", "downmixed_audio"} <= set(clip.notes)
    assert clip.source["sample_rate"] == 44100 and clip.source["channels"] == 2
    assert len(clip.audio) == len(clip.frames) * 640
    assert np.median(landmark_error) < 3.0 and angle_error.max() < 2.0


def test_crop_mapping_matches_pil_resampling():
    # A bright pixel at a known source position must land where to_crop says.
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[53, 71] = 255
    box = (40.0, 20.0, 80.0)  # 80 px box -> 256 px crop
    crop = pp.apply_crop(frame[None], box, 256)[0].astype(np.float64)[..., 0]
    expected = pp.to_crop(np.array([71.0, 53.0]), box, 256)
    ys, xs = np.mgrid[: crop.shape[0], : crop.shape[1]]
    centroid = np.array([(xs * crop).sum(), (ys * crop).sum()]) / crop.sum()
    np.testing.assert_allclose(centroid, expected, atol=0.15)


def test_crop_box_holds_every_landmark():
    rng = np.random.default_rng(0)
    marks = rng.normal(100, 20, (10, 68, 2)) + np.linspace(0, 30, 10)[:, None, None]
    x0, y0, side = pp.crop_box(marks, 2.0)
    crop = pp.to_crop(marks, (x0, y0, side), 256)
    assert crop.min() > 0 and crop.max() < 255


def test_weak_perspective_pose_recovers_a_known_rotation():
    canonical = fixtures_mean_face()
    true = Rotation.from_euler("YXZ", [[0.3, -0.2, 0.15], [-0.1, 0.25, -0.3]])
    posed = np.einsum("tij,nj->tni", true.as_matrix(), canonical)
    points = 90.0 * posed[..., :2] + np.array([120.0, 130.0])
    rotation, translation, scale = pp.weak_perspective_pose(points, canonical)
    angle = (Rotation.from_matrix(rotation) * true.inv()).magnitude()
    assert np.rad2deg(angle).max() < 0.01
    np.testing.assert_allclose(scale, 90.0, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.det(rotation), 1.0, atol=1e-9)


def fixtures_mean_face():
    from data_pipelines.synthtalk import face

    return face.mean_shape()


def test_longest_run():
    assert pp.longest_run(np.array([1, 1, 0, 1, 1, 1, 0, 1], bool)) == (3, 6)
    assert pp.longest_run(np.zeros(4, bool)) == (0, 0)


def test_truncation_and_garbage_are_told_apart(tmp_path, raw_root):
    root = raw_root("voxceleb2")
    good = os.path.join(root, "dev/mp4/id00012/21Uxsk56VDQ/00001.mp4")
    data = open(good, "rb").read()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(5000))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    reasons = {}
    for path in (cut, junk, empty, tmp_path / "missing.mp4"):
        with pytest.raises(pp.SkipClip) as info:
            pp.preprocess_video(path, None, OPTIONS)
        reasons[path.name] = info.value.reason
    assert reasons == {"cut.mp4": "truncated", "junk.mp4": "unreadable", "empty.mp4": "unreadable", "missing.mp4": "missing_file"}
    assert not pp.mp4_truncated(good)


def test_faceless_video_is_skipped_after_the_probe_frames(tmp_path):
    from macl_jax.media.video_io import write_video

    frames = np.repeat(np.asarray(Image.new("RGB", (96, 96), (120, 90, 60)))[None], 30, axis=0)
    path = write_video(tmp_path / "flat.mp4", frames, 25.0, np.zeros(19200, np.float32) + 0.01)
    with pytest.raises(pp.SkipClip) as info:
        pp.preprocess_video(path, None, pp.PreprocessOptions(min_frames=20, cnn_fallback=False))
    assert info.value.reason == "no_face"


def test_unknown_skip_reason_is_refused():
    with pytest.raises(ValueError, match="unknown skip reason"):
        pp.SkipClip("whatever")
