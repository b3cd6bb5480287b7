"""The detector contract, registry and safe model format, exercised with the ELA detector."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dflab.detectors import available, create, load_detector
from dflab.detectors.modelfile import ModelFileError
from dflab.detectors.base import NotFittedError
from dflab.detectors.registry import UnknownDetectorError


def _image(rng, fake: bool, size=48):
    """Smooth 'real' images; 'fakes' carry a resampled, double-JPEG patch (what ELA sees)."""
    base = rng.normal(128, 8, (size, size, 3)).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(base)
    if fake:
        patch = img.crop((8, 8, 40, 40)).resize((12, 12)).resize((32, 32), Image.NEAREST)
        img.paste(patch, (8, 8))
    return img


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        fake = i % 2 == 1
        path = folder / f"{i:02d}.jpg"
        _image(rng, fake).save(path, quality=int(rng.integers(70, 95)))
        rows.append({"path": str(path), "label": int(fake), "video": f"v{i}"})
    return pd.DataFrame(rows)


def test_registry_lists_every_detector_with_a_description():
    entries = available()
    assert {"ela-logreg", "ela-svm", "ela-rf", "ela-gb", "ela-adaboost"} <= set(entries)
    for name, entry in entries.items():
        assert entry.description, name
        assert create(name).name == name


@pytest.mark.slow
def test_naming_a_detector_imports_the_modules_up_to_its_own_only():
    """In a fresh process: asking for the CNN detector imports the detector modules up to its own (the
    folder's order), not the handcrafted ones; listing them all then imports every one."""
    import subprocess
    import sys

    script = ("import sys\n"
              "from dflab.detectors.registry import available, get\n"
              "get('efficientnet-lite0')\n"
              "before = 'dflab.detectors.handcrafted.block_dct' in sys.modules\n"
              "names = available()\n"
              "print(before, 'block-dct-logreg' in names, 'dflab.detectors.handcrafted.block_dct' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.stdout.split() == ["False", "True", "True"], result.stderr


def test_unknown_detector_names_the_alternatives():
    with pytest.raises(UnknownDetectorError, match="ela-logreg"):
        create("no-such-detector")


def test_fitted_means_an_attribute_ending_in_underscore_set_on_the_detector():
    """One rule, scikit-learn's: fitted state is what fit or load sets on the detector itself."""
    from dflab.detectors.base import Detector

    class Toy(Detector):
        table_ = None  # a class-level default is no fitted state

        def __init__(self, size: int = 1):
            self.size = size

    toy = Toy()
    assert not toy.is_fitted()
    vars(toy).update(registry_name="toy", _cache={}, __private=1)  # no trailing "_": not fitted state
    assert not toy.is_fitted()
    with pytest.raises(NotFittedError, match="detector toy is not trained"):
        toy._check_fitted()
    toy.table_ = np.zeros(2)
    assert toy.is_fitted()
    toy._check_fitted()


def test_fit_predict_save_load_identical(small_set, tmp_path):
    detector = create("ela-logreg", workers=1, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(NotFittedError):
        detector.predict_proba(small_set)
    detector.fit(small_set.iloc[:30], valid=small_set.iloc[30:])
    scores = detector.predict_proba(small_set)
    assert scores.shape == (40,) and np.all((scores >= 0) & (scores <= 1))
    assert detector.selection_["selection"] == "validation AUC"
    for target in (tmp_path / "model", tmp_path / "model.zip"):
        detector.save(target)
        loaded = load_detector(target, workers=1)
        assert loaded.name == "ela-logreg"
        np.testing.assert_array_equal(loaded.predict_proba(small_set), scores)
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["dflab_version"] and len(config["content_hash"]) == 64
    assert "workers" not in config["params"]  # runtime settings are not part of a model
    assert not list((tmp_path / "model").glob("*.pkl"))


def test_tampered_model_is_refused(small_set, tmp_path):
    detector = create("ela-logreg", workers=1).fit(small_set)
    detector.save(tmp_path / "m")
    skops_file = next((tmp_path / "m").glob("*.skops"))
    data = bytearray(skops_file.read_bytes())
    data[-10] ^= 0xFF
    skops_file.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256"):
        load_detector(tmp_path / "m")
    detector.save(tmp_path / "n")
    config = json.loads((tmp_path / "n" / "config.json").read_text())
    config["params"]["quality"] = 50
    (tmp_path / "n" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="content hash"):
        load_detector(tmp_path / "n")


def test_not_a_model(tmp_path):
    with pytest.raises(ModelFileError, match="no such"):
        load_detector(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="config.json"):
        load_detector(tmp_path / "empty")
    bad_zip = tmp_path / "x.zip"
    with zipfile.ZipFile(bad_zip, "w") as archive:
        archive.writestr("config.json", json.dumps({"format": "something-else"}))
    with pytest.raises(ModelFileError, match="not a dflab model"):
        load_detector(bad_zip)


def test_bad_files_become_nan_or_raise(small_set, tmp_path):
    detector = create("ela-logreg", workers=1).fit(small_set)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    paths = [small_set.path[0], str(broken)]
    scores = detector.predict_proba(paths, on_error="nan")
    assert np.isfinite(scores[0]) and np.isnan(scores[1])
    with pytest.raises(ValueError, match="broken.jpg"):
        detector.predict_proba(paths)


def test_explain_is_an_image_sized_map(small_set):
    detector = create("ela-logreg", workers=1).fit(small_set)
    heatmap = detector.explain(small_set.path[1])
    assert heatmap.shape == (48, 48) and heatmap.min() >= 0 and heatmap.max() <= 1


def test_parallel_and_cached_features_match(small_set, tmp_path):
    serial = create("ela-logreg", workers=1, cache_dir=str(tmp_path / "c")).fit(small_set)
    parallel = create("ela-logreg", workers=2, cache_dir=str(tmp_path / "c")).fit(small_set)
    np.testing.assert_allclose(serial.predict_proba(small_set), parallel.predict_proba(small_set))
