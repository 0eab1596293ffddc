"""`RHMRenderer`: the Rhythmic Head Motion generator's inputs from one photo and a landmark track."""

import json

import numpy as np
import pytest
from skimage import data

from macl_jax.infer.inputs import crop_face, find_face
from macl_jax.infer.render import RHMRenderer
from macl_jax.media.face_edges import face_edge_map


@pytest.fixture(scope="module")
def bound(rhm_tiny_run):
    """(renderer bound to the astronaut, her crop, her crop landmarks)."""
    workdir, _ = rhm_tiny_run
    renderer = RHMRenderer(workdir, "final")
    photo = data.astronaut()
    crop, landmarks = crop_face(photo, find_face(photo), renderer.size, 2.0)
    return renderer.bind(crop, landmarks), crop, landmarks


def _turned(landmarks, degrees, shift, centre):
    a = np.deg2rad(degrees)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (landmarks - centre) @ rot.T + centre + shift


def test_the_photo_is_every_reference_and_its_own_pose_reproduces_it(bound):
    renderer, crop, landmarks = bound
    batch = renderer.batch(landmarks[None])
    k = renderer.num_refs
    assert batch["ref_images"].shape == (1, k, *crop.shape)
    assert all(np.array_equal(ref, crop) for ref in batch["ref_images"][0])
    np.testing.assert_array_equal(batch["ref_maps"][0, 0, ..., 0], face_edge_map(landmarks, renderer.size))
    np.testing.assert_array_equal(batch["target_map"][0], batch["ref_maps"][0, 0])
    # At the photo's own pose the re-posed mesh lands on the photo's landmarks.
    np.testing.assert_allclose(batch["target_rotation"][0], batch["ref_rotation"][0, 0], atol=1e-6)
    np.testing.assert_allclose(batch["ani_landmarks"][0], landmarks, atol=1e-4)
    # The warping reference is the photo with its mouth box blacked out, nothing else touched.
    mouth = batch["target_mouth_mask"][0, ..., 0] == 1
    assert 0 < mouth.mean() < 0.25
    assert np.all(batch["warp_ref_image"][0][mouth] == 0)
    np.testing.assert_array_equal(batch["warp_ref_image"][0][~mouth], crop[~mouth])


def test_the_mesh_follows_a_turned_and_shifted_head(bound):
    """An in-plane turn of the whole face is a head pose the lifted mesh represents exactly: the
    render's landmarks are the turned ones, and their depth order is a face's."""
    renderer, _, landmarks = bound
    centre = landmarks.mean(axis=0)
    turned = np.stack([_turned(landmarks, d, s, centre) for d, s in ((12.0, (1.5, -0.5)), (-8.0, (0.0, 2.0)))])
    batch = renderer.batch(turned)
    np.testing.assert_allclose(batch["ani_landmarks"], turned, atol=1e-3)
    posed = renderer.inputs.fixed["ref_landmarks_3d"][0]
    assert posed[30, 2] > max(posed[0, 2], posed[16, 2])  # the nose tip nearer than the jaw's ends


def test_a_frame_does_not_depend_on_its_neighbours_in_the_batch(bound):
    """Frames are rendered 16 at a time in inference mode (stored statistics): a frame is the same
    alone, in a batch with others, and padded at the end of a track."""
    renderer, crop, landmarks = bound
    centre = landmarks.mean(axis=0)
    track = np.stack([_turned(landmarks, d, (0.1 * d, 0.0), centre) for d in np.linspace(-10, 10, 17)])
    frames = renderer(track)
    assert frames.shape == (17, *crop.shape) and frames.dtype == np.uint8
    np.testing.assert_array_equal(renderer(track[16:]), frames[16:])
    np.testing.assert_array_equal(renderer(track[3:5]), frames[3:5])


def test_generate_with_rhm_makes_the_video(quick_pipeline, rhm_tiny_run, tmp_path, capsys):
    """`macl-jax generate --renderer rhm` (in this process): the generator's frame size, one frame
    per 40 ms of the input speech, and its audio. Quality is the stage's held-out evaluation."""
    from PIL import Image

    from macl_jax.infer import generate
    from macl_jax.media.samples import arctic_speech_file
    from macl_jax.media.video_io import read_audio, read_video

    workdir, _ = quick_pipeline
    rhm_dir, _ = rhm_tiny_run
    photo, speech, out = tmp_path / "astronaut.png", arctic_speech_file(), tmp_path / "rhm.mp4"
    Image.fromarray(data.astronaut()).save(photo)
    rc = generate.main(["--checkpoint", str(workdir), "--image", str(photo), "--audio", str(speech), "--out", str(out),
                        "--renderer", "rhm", "--renderer-checkpoint", str(rhm_dir), "--progress", "off"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-3000:]
    summary = json.loads(captured.out)
    assert summary["renderer"] == "rhm"
    video = read_video(out)
    assert video.frames.shape[1:] == (32, 32, 3)  # the tiny preset's frames
    source = read_audio(speech, 16000)
    assert len(video.frames) == summary["frames"] and abs(summary["frames"] - len(source) / 640) <= 1
    track = read_audio(out, 16000)
    n = min(len(track), len(source))
    assert np.corrcoef(track[:n], source[:n])[0, 1] > 0.99


def test_a_missing_or_wrong_renderer_run_is_refused_with_the_fix(quick_pipeline, tmp_path):
    from macl_jax.infer import generate

    workdir, _ = quick_pipeline
    args = generate._parser().parse_args(["--checkpoint", str(workdir)])
    with pytest.raises(generate.JobError, match=r"has no `rhm` run. Train one with `macl-jax rhm --config configs/rhm.py:cpu"):
        generate.Generator(args).renderer_kind("rhm")
    with pytest.raises(generate.JobError, match="is a 'mdn' run; pass a `renderer` or `rhm` run"):
        generate.run_directories(workdir, str(workdir / "mdn"))
    with pytest.raises(generate.JobError, match="no readable config.json"):
        generate.run_directories(workdir, str(tmp_path))
