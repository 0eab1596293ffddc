"""The pieces both builders share: the stored example and how worker processes start."""

from __future__ import annotations

import sys
import types

import numpy as np

from data_pipelines import build, schema


def _labels(**changes):
    return {"clip_id": "a/b/00001", "speaker_id": "a", "speaker": 3, "emotion": "neutral", "intensity": 0,
            "fps": 25.0, "sample_rate": 16000, "jpeg_quality": 90, **changes}


def test_left_out_fields_are_stored_empty_in_the_schema_dtypes():
    example = build.schema_example(**_labels(), audio=np.zeros(640, np.float64))
    assert set(example) == set(schema.features().keys())
    assert example["frames"].shape == (0,) and example["landmarks_2d"].shape == (0, 68, 2)
    assert example["head_rotation"].shape == (0, 3, 3) and example["visemes"].shape == (0, 4)
    assert example["audio"].dtype == np.float32 and example["phonemes"].dtype == np.int32
    schema.features().encode_example(example)  # raises on a shape or dtype the schema does not accept


def test_video_fields_frames_and_default_validity():
    frames = np.full((2, 16, 16, 3), 128, np.uint8)
    example = build.schema_example(**_labels(), audio=np.zeros(1280, np.float32), frames=frames,
                                   landmarks_2d=np.zeros((2, 68, 2)), landmarks_3d=np.zeros((2, 68, 3)),
                                   head_rotation=np.broadcast_to(np.eye(3), (2, 3, 3)), head_translation=np.zeros((2, 3)))
    assert [f[:2] for f in example["frames"]] == [b"\xff\xd8"] * 2  # JPEG
    assert example["frames"][0] == build.encode_jpeg(frames[0], 90)  # same bytes for the same pixels
    np.testing.assert_array_equal(example["landmarks_valid"], [True, True])
    assert example["landmarks_2d"].dtype == np.float32
    schema.features().encode_example(example)


def test_workers_fork_unless_a_threaded_runtime_is_loaded(monkeypatch):
    modules = {k: v for k, v in sys.modules.items() if k not in ("jax", "grpc", "apache_beam")}
    monkeypatch.setattr(sys, "modules", modules)
    assert build.worker_context().get_start_method() == "fork"
    modules["jax"] = types.ModuleType("jax")
    script = types.ModuleType("__main__")
    script.__file__ = "/work/build_data.py"  # a script: spawn can re-import it
    modules["__main__"] = script
    assert build.worker_context().get_start_method() == "spawn"
    # Code typed at a prompt cannot be re-imported by spawn: the work stays in this process.
    modules["__main__"] = types.ModuleType("__main__")
    assert build.worker_context() is None
    with build.process_pool(4) as pool:
        assert pool is None
        assert list(build.ordered_map(pool, abs, [-2, 1, -3])) == [2, 1, 3]
