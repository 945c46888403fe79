"""Collection manifests and their file validation (``mome collection check``)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from cli_runner import run_cli

from mome.data.collection import Case, Collection, load_collection
from mome.data.validate import find_problems, validate_collection
from mome.errors import DataError

SHAPE = (8, 9, 7)


def _nii(path, data, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return path


def _label(rng):
    lab = np.zeros(SHAPE, np.uint8)
    lab[2:5, 3:6, 2:4] = 1
    return lab


@pytest.fixture
def good(tmp_path):
    """A valid two-subject, two-modality collection saved as tmp_path/collection.json."""
    rng = np.random.default_rng(0)
    cases = []
    for s in ("s1", "s2"):
        lab = _nii(tmp_path / s / "label.nii.gz", _label(rng))
        for m in ("T1", "FLAIR"):
            img = _nii(tmp_path / s / f"{m}.nii.gz", rng.random(SHAPE).astype(np.float32))
            cases.append(Case(f"{s}_{m}", img, lab, m, "DS", "ms", "train" if s == "s1" else "test", True, s))
    coll = Collection("demo", cases)
    coll.save(tmp_path / "collection.json")
    return tmp_path / "collection.json"


def test_valid_collection_round_trip(good):
    coll = validate_collection(load_collection(good))
    assert len(coll) == 4 and coll.tasks() == ["DS/FLAIR", "DS/T1"]
    raw = json.loads(good.read_text())
    assert raw["cases"][0]["image"] == "s1/T1.nii.gz"  # stored relative to the manifest
    assert coll.cases[0].image == good.parent / "s1" / "T1.nii.gz"
    assert find_problems(coll) == []


def test_missing_image_names_case(good):
    (good.parent / "s2" / "FLAIR.nii.gz").unlink()
    with pytest.raises(DataError, match=r"case 's2_FLAIR': image .*FLAIR.nii.gz does not exist"):
        validate_collection(load_collection(good))


def test_missing_label_names_both_cases(good):
    (good.parent / "s1" / "label.nii.gz").unlink()
    with pytest.raises(DataError, match=r"2 problem.*'s1_T1': label .*does not exist.*'s1_FLAIR'"):
        validate_collection(load_collection(good))


def test_shape_mismatch(good):
    _nii(good.parent / "s2" / "T1.nii.gz", np.ones((8, 9, 6), np.float32))
    with pytest.raises(DataError, match=r"case 's2_T1': label shape \(8, 9, 7\) differs from image shape \(8, 9, 6\)"):
        validate_collection(load_collection(good))


def test_affine_mismatch_and_tolerance(good):
    aff = np.eye(4)
    aff[0, 3] = 1e-5  # float32 rounding-level difference: accepted
    _nii(good.parent / "s1" / "T1.nii.gz", np.ones(SHAPE, np.float32), aff)
    validate_collection(load_collection(good))
    aff[0, 3] = 0.5
    _nii(good.parent / "s1" / "T1.nii.gz", np.ones(SHAPE, np.float32), aff)
    with pytest.raises(DataError, match=r"case 's1_T1': label affine differs from the image affine by up to 0.5"):
        validate_collection(load_collection(good))


def test_non_binary_label_lists_values(good):
    lab = _label(None)
    lab[0, 0, 0] = 2
    lab[0, 0, 1] = 4
    _nii(good.parent / "s2" / "label.nii.gz", lab)
    with pytest.raises(DataError, match=r"case 's2_T1': label .* is not binary: it has values 0, 1, 2, 4"):
        validate_collection(load_collection(good))
    # headers-only validation does not read label voxels
    validate_collection(load_collection(good), check_label_values=False)


def test_unknown_modality_and_duplicate_ids(good, tmp_path):
    raw = json.loads(good.read_text())
    raw["cases"][1]["modality"] = "ADC"
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"unknown modality 'ADC' \(case 's1_FLAIR'\)"):
        load_collection(tmp_path / "bad.json")
    coll = load_collection(good)
    coll.cases.append(coll.cases[0])
    with pytest.raises(DataError, match=r"case 's1_T1': duplicate case id"):
        validate_collection(coll)
    coll.cases[-1] = Case("x", coll.cases[0].image, None, "PD", "DS", "ms")
    with pytest.raises(DataError, match=r"case 'x': unknown modality 'PD'"):
        validate_collection(coll)


def test_check_cli_prints_counts(good, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "collection", "check", good)
    assert code in (0, None), err
    row = next(line for line in out.splitlines() if "FLAIR" in line and "DS" in line)
    assert [c.strip() for c in row.split("│") if c.strip()] == ["DS", "FLAIR", "seen", "1", "1", "2"]
    assert "4 cases OK" in out


def test_check_cli_fails_with_one_line(good, monkeypatch, capsys):
    (good.parent / "s2" / "T1.nii.gz").unlink()
    code, out, err = run_cli(monkeypatch, capsys, "collection", "check", good)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("mome: error: collection 'demo' is invalid: 1 problem(s): case 's2_T1'")


def test_load_collection_can_check_files(good):
    (good.parent / "s1" / "T1.nii.gz").unlink()
    assert len(load_collection(good)) == 4  # structure only by default
    with pytest.raises(DataError, match=r"case 's1_T1': image .* does not exist"):
        load_collection(good, check_files=True)
