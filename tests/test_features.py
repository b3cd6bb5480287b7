"""The feature engine with the handcrafted extractors: workers give the same features as one
process, the per-file cache is hit instead of recomputing, and results stream chunk by chunk."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from dflab.media import feature_extraction as features
from dflab.detectors.handcrafted.block_dct import BlockDCTFeatures
from dflab.detectors.handcrafted.ela import ELAFeatures
from dflab.detectors.handcrafted.spectrum import SpectrumFeatures

EXTRACTORS = [ELAFeatures(), BlockDCTFeatures(block=16, stride=8), SpectrumFeatures(n_points=32)]


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("feature_images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(features.MIN_ITEMS_FOR_WORKERS + 4):  # enough files for the worker pool to start
        size = (40 + i % 7, 48 + i % 5)
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        path = folder / f"{i:03d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(image).save(path)
        paths.append(str(path))
    (folder / "broken.png").write_bytes(b"not an image")
    return paths + [str(folder / "broken.png")]


@pytest.mark.slow
def test_workers_give_the_same_features_as_one_process(image_files):
    for extractor in EXTRACTORS:
        single = features.extract(image_files, extractor, workers=1, cache_dir=False)
        parallel = features.extract(image_files, extractor, workers=2, cache_dir=False)
        assert set(single.errors) == set(parallel.errors) == {len(image_files) - 1}
        assert "not recognised" in parallel.errors[len(image_files) - 1]
        for one, two in zip(single.features, parallel.features):
            if one is None:
                assert two is None
            else:
                np.testing.assert_array_equal(one, two)


@dataclass(frozen=True)
class CountingExtractor:
    """Wraps an extractor and counts its calls in a file (calls may happen in worker processes)."""

    inner: object
    counter: str

    def cache_key(self) -> str:
        return "counting-" + self.inner.cache_key()

    def __call__(self, image):
        with open(self.counter, "a") as handle:
            handle.write("x")
        return self.inner(image)


@pytest.mark.parametrize("workers", [1, 2])
def test_cache_hit_returns_identical_features_without_recomputing(image_files, tmp_path, workers):
    counter = tmp_path / "calls"
    extractor = CountingExtractor(BlockDCTFeatures(), str(counter))
    first = features.extract(image_files, extractor, workers=workers, cache_dir=tmp_path / "cache")
    n_good = len(image_files) - 1
    assert len(counter.read_text()) == n_good
    second = features.extract(image_files, extractor, workers=workers, cache_dir=tmp_path / "cache")
    assert len(counter.read_text()) == n_good  # every usable file came from the cache
    assert second.errors.keys() == first.errors.keys()
    for one, two in zip(first.features, second.features):
        assert (one is None and two is None) or np.array_equal(one, two)
    # Other parameters, other key: computed afresh.
    other = CountingExtractor(BlockDCTFeatures(stride=16), str(counter))
    features.extract(image_files[:3], other, workers=1, cache_dir=tmp_path / "cache")
    assert len(counter.read_text()) == n_good + 3


def test_iter_extract_streams_in_order(image_files, tmp_path):
    counter = tmp_path / "calls"
    extractor = CountingExtractor(SpectrumFeatures(n_points=8), str(counter))
    chunks = features.iter_extract(image_files, extractor, workers=1, cache_dir=False, chunk_size=5)
    indices, results = next(chunks)
    assert indices == [0, 1, 2, 3, 4] and len(results) == 5
    assert len(counter.read_text()) == 5  # lazily: nothing past the first chunk is computed yet
    seen = indices + [i for chunk_indices, _ in chunks for i in chunk_indices]
    assert seen == list(range(len(image_files)))


def test_parallel_iter_extract_streams_in_order(image_files):
    seen = []
    for indices, results in features.iter_extract(image_files, SpectrumFeatures(n_points=8), workers=2,
                                                   cache_dir=False, chunk_size=3):
        assert len(indices) == len(results)
        seen += indices
    assert seen == list(range(len(image_files)))
