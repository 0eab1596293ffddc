"""A tiny SynthTalk build shared by the data-pipeline tests (built once per session)."""

from __future__ import annotations

import time

import pytest


@pytest.fixture(scope="session")
def tiny_voxceleb(tmp_path_factory):
    """(spec, dataset_dir, build_seconds) of voxceleb_like_tiny."""
    from data_pipelines.synthtalk import builder
    from data_pipelines.synthtalk.specs import variant

    spec = variant("voxceleb_like", "tiny")
    start = time.perf_counter()
    path = builder.build(spec, str(tmp_path_factory.mktemp("synthtalk")), num_workers=2)
    return spec, path, time.perf_counter() - start
