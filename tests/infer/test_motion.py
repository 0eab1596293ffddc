"""Chunked landmark prediction: the chunk plan, the cross-fade and the reference face."""

import numpy as np
import pytest

from macl_jax.geometry import dealign_2d, denormalise_scale
from macl_jax.infer.motion import blend_chunks, chunk_plan, reference_face


@pytest.mark.parametrize("num_frames", [1, 24, 25, 26, 100, 251, 1000])
def test_chunk_plan_tiles_the_frames_exactly(num_frames):
    plan = chunk_plan(num_frames, chunk_frames=25, overlap=5)
    covered = np.concatenate([np.arange(start, start + emit) for start, emit in plan])
    np.testing.assert_array_equal(covered, np.arange(num_frames))
    assert all(emit <= 25 for _, emit in plan)


def test_chunk_plan_refuses_an_overlap_as_long_as_the_chunk():
    with pytest.raises(ValueError, match="overlap"):
        chunk_plan(100, chunk_frames=10, overlap=10)


def test_blending_reproduces_a_signal_every_chunk_agrees_on():
    signal = np.sin(np.arange(300) / 7.0)[:, None, None] * np.ones((1, 68, 2))

    def predict(index, start):
        padded = np.concatenate([signal, np.zeros((50, 68, 2))])
        return padded[start : start + 40]

    out = np.concatenate([p for _, p in blend_chunks(predict, 300, chunk_frames=40, overlap=8)])
    np.testing.assert_allclose(out, signal, atol=1e-6)


def test_cross_fade_moves_linearly_from_one_chunk_to_the_next():
    """Chunks predicting constants 0, 1, 2, ...: the overlap ramps between them, nothing jumps."""
    out = np.concatenate([p for _, p in blend_chunks(lambda i, s: np.full((20, 68, 2), float(i)), 60, 20, 5)])[:, 0, 0]
    assert out.shape == (60,)
    assert np.max(np.abs(np.diff(out))) <= 1 / 6 + 1e-6  # overlap 5 -> steps of 1/6
    np.testing.assert_allclose(out[15:20], (np.arange(5) + 1) / 6)


def test_reference_face_decodes_back_to_the_landmarks():
    rng = np.random.default_rng(0)
    landmarks = rng.normal(size=(68, 2)) * 20 + 128
    face = reference_face(landmarks)
    back = denormalise_scale(dealign_2d(face.aligned[None], np.array([face.angle]), face.translation[None]), face.scale, face.offset)
    np.testing.assert_allclose(np.asarray(back)[0], landmarks, atol=1e-6)


def test_reference_face_refuses_bad_landmarks():
    with pytest.raises(ValueError, match="68, 2"):
        reference_face(np.full((68, 2), np.nan))
