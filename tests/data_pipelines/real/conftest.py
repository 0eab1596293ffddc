"""Raw fixtures in the distributed layouts and their plain builds, made once per test session."""

from __future__ import annotations

import pytest

from data_pipelines.real.preprocess import PreprocessOptions

# Fixture clips are 1.2 s (30 frames at 25 fps); real builds default to 64 frames.
OPTIONS = PreprocessOptions(min_frames=20)


@pytest.fixture(scope="session")
def raw_root(tmp_path_factory):
    """Makes (once) and returns the raw fixture directory of a dataset."""
    from data_pipelines.real import fixtures

    made = {}

    def make(dataset: str) -> str:
        if dataset not in made:
            root = tmp_path_factory.mktemp(f"raw_{dataset}")
            fixtures.make(dataset, root)
            made[dataset] = str(root)
        return made[dataset]

    return make


@pytest.fixture(scope="session")
def plain_build(raw_root, tmp_path_factory):
    """Builds (once) a dataset from its fixture with the plain builder; returns the dataset dir."""
    from data_pipelines import real

    built = {}

    def build(dataset: str, config: str | None = None) -> str:
        key = (dataset, config)
        if key not in built:
            out = tmp_path_factory.mktemp(f"plain_{dataset}")
            built[key] = real.prepare(dataset, raw_root(dataset), str(out), config=config, options=OPTIONS, num_workers=2)
        return built[key]

    return build


@pytest.fixture(scope="session")
def read_split():
    """read_split(dataset_dir, split) -> every example of the split, in stored order."""
    from data_pipelines import datasets

    def read(path: str, split: str) -> list[dict]:
        source = datasets.clip_source(path, split)
        return [source[i] for i in range(len(source))]

    return read
