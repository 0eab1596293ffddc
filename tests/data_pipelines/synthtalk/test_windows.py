"""Windowing SynthTalk clips into model examples, through the sharded grain pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from data_pipelines import datasets, loader, schema
from data_pipelines.windows import MDNClips, RendererPairs, SFEWindows, decode_frames, make_window
from macl_jax.geometry import ANCHOR_T_SHAPE_9, T_SHAPE_INDICES, dealign_2d, inner_lip_area, normalise_scale
from macl_jax.media import audio_features


@pytest.fixture(scope="module")
def clip(tiny_voxceleb):
    _, path, _ = tiny_voxceleb
    return datasets.clip_source(path, "train")[5]


def test_sfe_window_pairs_each_centre_with_its_audio_and_frames(clip):
    sfe = SFEWindows(num_steps=20, stride=3)
    ex = sfe(clip, np.random.default_rng(0))
    assert ex["audio"].shape == (20, 20, 80) and ex["frames"].shape[:2] == (20, 5)
    centres = ex["centres"]
    assert np.all(np.diff(centres) == 3) and centres[0] >= 2 and centres[-1] <= len(clip["frames"]) - 3
    mel = audio_features.log_mel(clip["audio"])
    np.testing.assert_array_equal(ex["audio"][7], mel[4 * (centres[7] - 2): 4 * (centres[7] + 3)])
    np.testing.assert_array_equal(ex["frames"][7, 2], decode_frames(clip["frames"], [centres[7]])[0])
    np.testing.assert_array_equal(ex["frames"][7, 0], decode_frames(clip["frames"], [centres[7] - 2])[0])
    # Evaluation windows are fixed; training windows are drawn from the rng.
    fixed = SFEWindows(num_steps=5, train=False)
    assert fixed(clip, np.random.default_rng(1))["centres"][0] == 2 == fixed(clip, np.random.default_rng(2))["centres"][0]
    starts = {int(SFEWindows(num_steps=5)(clip, np.random.default_rng(s))["centres"][0]) for s in range(12)}
    assert len(starts) > 3
    audio_only = SFEWindows(num_steps=20, stride=3, frames=False)(clip, np.random.default_rng(0))
    assert "frames" not in audio_only
    np.testing.assert_array_equal(audio_only["audio"], ex["audio"])  # same rng, same window


def test_mdn_clip_is_aligned_to_the_anchor_and_invertible(clip):
    ex = MDNClips(clip_frames=64)(clip, np.random.default_rng(0))
    assert ex["audio"].shape == (60, 20, 80) and ex["aligned"].shape == (60, 68, 2)
    # The T-shape points sit on the anchor after alignment (rigid fit of a non-rigid face: ~1e-2).
    err = np.abs(ex["aligned"][:, T_SHAPE_INDICES] - ANCHOR_T_SHAPE_9).mean()
    assert err < 0.05
    # De-aligning and de-normalising gives back the (smoothed) pixel landmarks.
    normalised, scale, offset = normalise_scale(ex["landmarks"].astype(np.float64))
    back = dealign_2d(ex["aligned"].astype(np.float64), ex["angle"], ex["translation"])
    np.testing.assert_allclose(back, normalised, atol=1e-4)
    np.testing.assert_allclose(scale, ex["scale"], rtol=1e-5)
    # The reference is the aligned frame with the most closed mouth.
    areas = inner_lip_area(ex["aligned"])
    np.testing.assert_allclose(inner_lip_area(ex["reference"]), areas.min(), rtol=1e-5)
    assert ex["head_rotation"].shape == (60, 3, 3)


def test_renderer_pair_comes_from_one_clip_with_a_gap(clip):
    pairs = RendererPairs(min_gap=8)
    for seed in range(5):
        ex = pairs(clip, np.random.default_rng(seed))
        frames = decode_frames(clip["frames"], np.arange(len(clip["frames"])))
        t = int(np.flatnonzero([np.array_equal(f, ex["target"]) for f in frames])[0])
        r = int(np.flatnonzero([np.array_equal(f, ex["reference"]) for f in frames])[0])
        assert abs(t - r) >= 8
        np.testing.assert_array_equal(ex["target_landmarks"], clip["landmarks_2d"][t])
        assert ex["raster"].shape == ex["target"].shape and ex["raster"].dtype == np.uint8
        assert (ex["raster"] != 255).any()


def test_short_clip_error_names_the_clip(clip):
    short = dict(clip, frames=clip["frames"][:10], clip_id=b"spk/abc/00007")
    with pytest.raises(ValueError, match="spk/abc/00007.*10 frames"):
        SFEWindows()(short, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown window type"):
        make_window("lipsync")


def _ids(batch):
    return [int(s) * 1000 + int(c[0]) for s, c in zip(batch["speaker"], batch["centres"])]


def test_two_processes_read_disjoint_rows_of_the_same_global_batches(tiny_voxceleb):
    _, path, _ = tiny_voxceleb
    source = datasets.clip_source(path, "train")
    window = SFEWindows(num_steps=5)

    def batches(process_index, process_count, n=3):
        ds = loader.global_batch_dataset(source, global_batch_size=8, process_index=process_index,
                                         process_count=process_count, seed=3, transform=window)
        return [ds[i] for i in range(n)]

    single = batches(0, 1)
    first, second = batches(0, 2), batches(1, 2)
    for whole, a, b in zip(single, first, second):
        np.testing.assert_array_equal(np.concatenate([a["audio"], b["audio"]]), whole["audio"])
        assert not set(_ids(a)) & set(_ids(b))


def test_restored_iterator_yields_the_same_next_batch(tiny_voxceleb):
    _, path, _ = tiny_voxceleb
    source = datasets.clip_source(path, "train")

    def pipeline():
        ds = loader.global_batch_dataset(source, global_batch_size=4, process_index=0, process_count=1,
                                         seed=5, transform=MDNClips())
        return loader.make_iterator(ds, prefetch=0)

    it = pipeline()
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = next(it)
    restored = pipeline()
    restored.set_state(state)
    got = next(restored)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])


def test_worker_processes_give_the_same_batches(tiny_voxceleb):
    """Transforms are numpy-only and picklable: grain workers reproduce the in-process batches."""
    _, path, _ = tiny_voxceleb
    source = datasets.clip_source(path, "train")

    def first_batches(workers):
        ds = loader.global_batch_dataset(source, global_batch_size=4, process_index=0, process_count=1,
                                         seed=9, transform=RendererPairs())
        it = loader.make_iterator(ds, worker_count=workers, prefetch=1)
        try:
            return [next(it) for _ in range(3)]
        finally:
            it.close()

    for a, b in zip(first_batches(0), first_batches(2)):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
