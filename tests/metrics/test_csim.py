"""dlib-CSIM on real photos: same face ~1, noised face high, another person lower, no face -> NaN."""

import numpy as np
import pytest
from skimage import data, transform

from macl_jax.metrics.csim import DlibFaceEmbedder, cosine, csim, summarize


@pytest.fixture(scope="module")
def embedder():
    return DlibFaceEmbedder()


@pytest.fixture(scope="module")
def face():
    return data.astronaut()[:256, 96:352]  # 256x256 crop around the face: faster detection


def _lfw_face(i):
    """An LFW face (another person), upsampled from 25x25 to a detectable size, as RGB uint8."""
    g = transform.resize(data.lfw_subset()[i], (200, 200))
    return np.repeat((g * 255).astype(np.uint8)[..., None], 3, axis=-1)


def test_same_noised_other_and_no_face(embedder, face):
    rng = np.random.default_rng(0)
    noised = np.clip(face + rng.normal(0, 8, face.shape), 0, 255).astype(np.uint8)
    other = _lfw_face(0)
    cat = data.chelsea()[:256, :256]
    gen = np.stack([face, noised, transform.resize(other, face.shape[:2], preserve_range=True).astype(np.uint8), cat])
    values = csim(face, gen, embedder)
    assert values.shape == (4,)
    assert values[0] == pytest.approx(1.0, abs=1e-6)
    assert values[1] > 0.97
    assert values[2] < values[1] - 0.05  # a different person
    assert np.isnan(values[3])  # a cat: no face
    s = summarize(values)
    assert s["dlib_csim/no_face"] == 1 and s["dlib_csim/count"] == 3
    assert s["dlib_csim"] == pytest.approx(np.mean(values[:3]))
    # dlib's own same-person rule agrees: Euclidean distance < 0.6 for the noised copy only.
    e = embedder.embed(gen[:3])
    assert np.linalg.norm(e[1] - e[0]) < 0.6 < np.linalg.norm(e[2] - e[0])


def test_float_inputs_and_pairwise_references(face):
    emb01 = DlibFaceEmbedder(data_range=1.0, landmarks=5)
    pair = np.stack([face, face[:, ::-1]]).astype(np.float32) / 255.0
    values = csim(pair, pair, emb01)
    np.testing.assert_allclose(values, 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="2 reference images for 3"):
        csim(pair, np.concatenate([pair, pair[:1]]), emb01)


def test_cosine_matches_numpy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 128)), rng.normal(size=(5, 128))
    ref = [np.dot(x, y) / np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(a, b)]
    np.testing.assert_allclose(cosine(a, b), ref, rtol=1e-12)
    assert np.isnan(summarize(np.array([np.nan]))["dlib_csim"])
