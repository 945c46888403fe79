"""``mome collection visible``: training cases whose labelled lesion the image does not show are dropped."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from cli_runner import run_cli

from mome.data.collection import Case, Collection, load_collection
from mome.data.visibility import visible_collection
from mome.errors import ConfigError

SHAPE = (20, 20, 20)
NOISE_SD = 0.1


def _nii(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4)), str(path))
    return path


@pytest.fixture
def manifest(tmp_path):
    """Train: a lesion 1.0 brighter than its surroundings (CNR ~10), a lesion of the same intensity
    (CNR ~0: noise only), no lesion; test: the invisible one again."""
    rng = np.random.default_rng(0)
    lesion = np.zeros(SHAPE, np.uint8)
    lesion[8:12, 8:12, 8:12] = 1
    cases = []
    for cid, contrast, split, lab in (("bright", 1.0, "train", lesion), ("faint", 0.0, "train", lesion),
                                      ("none", 0.0, "train", np.zeros(SHAPE, np.uint8)),
                                      ("faint_test", 0.0, "test", lesion)):
        image = 1.0 + NOISE_SD * rng.standard_normal(SHAPE) + contrast * lab
        cases.append(Case(cid, _nii(tmp_path / f"{cid}.nii.gz", image.astype(np.float32)),
                          _nii(tmp_path / f"{cid}_label.nii.gz", lab), "T1", "DS", "ms", split))
    Collection("demo", cases).save(tmp_path / "collection.json")
    return tmp_path / "collection.json"


def test_invisible_training_lesions_are_dropped(manifest):
    result = visible_collection(load_collection(manifest), 1.0)
    # CNR = contrast / noise sd for the bright lesion; for the faint one the difference of two means of
    # 64 and ~1,000 noise voxels, about N(0, 0.13) in units of the sd: far from 1 either way
    assert result.cnr["bright"] == pytest.approx(1.0 / NOISE_SD, rel=0.2)
    assert abs(result.cnr["faint"]) < 0.6
    assert np.isnan(result.cnr["none"])  # no lesion: kept, it teaches "no lesion"
    assert result.dropped == ["faint"]
    assert [c.id for c in result.collection.cases] == ["bright", "none", "faint_test"]
    assert result.collection.provenance["visibility_filter"]["min_cnr"] == 1.0
    assert len(visible_collection(load_collection(manifest), 0.0).dropped) == 0


def test_negative_threshold_is_refused(manifest):
    with pytest.raises(ConfigError, match="min-cnr"):
        visible_collection(load_collection(manifest), -1.0)


def test_cli_writes_a_loadable_manifest_and_keeps_an_existing_one(manifest, monkeypatch, capsys):
    out = manifest.parent / "sub" / "visible.json"
    code, stdout, _ = run_cli(monkeypatch, capsys, "collection", "visible", manifest, "--out", out)
    assert code == 0 and "DS/T1: dropped 1 of 3 training cases" in stdout
    kept = load_collection(out, check_files=True)  # image paths still resolve from the new folder
    assert [c.id for c in kept.cases] == ["bright", "none", "faint_test"]
    before = out.read_text()
    code, stdout, err = run_cli(monkeypatch, capsys, "collection", "visible", manifest, "--out", out)
    assert code != 0 and "already exists" in err and len(err.strip().splitlines()) == 1
    assert out.read_text() == before
    code, _, err = run_cli(monkeypatch, capsys, "collection", "visible", manifest.parent / "missing.json", "--out",
                        manifest.parent / "x.json")
    assert code != 0 and "does not exist" in err and not (manifest.parent / "x.json").exists()
    assert json.loads(out.read_text())["provenance"]["visibility_filter"]["dropped"] == ["faint"]
