"""``mome evaluate`` / ``mome compare`` end to end on a tiny fabricated collection, errors included.

The CLI runs in-process through ``mome.cli.main.run`` (the console script), so the one-line error and
the exit code are tested as a user meets them.
"""

from __future__ import annotations

import json
import re
import sys

import nibabel as nib
import numpy as np
import pytest

from mome.cli import main as cli_main
from mome.data.collection import Case, Collection
from mome.errors import DataError
from mome.evaluation import evaluate_predictions

SHAPE = (12, 10, 8)
AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])  # anisotropic: 2 mm along the third axis


def _nii(path, data, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


def _label():
    lab = np.zeros(SHAPE, np.uint8)
    lab[3:7, 3:7, 2:6] = 1  # 64 voxels
    return lab


@pytest.fixture
def setup(tmp_path):
    """Collection (seen DS: T1 + FLAIR x 2 test subjects + 1 train; unseen UN: FLAIR x 1) and predictions.

    Predictions: s1 perfect (T1 by case id, FLAIR by the image's file name), s2/T1 empty, s2/FLAIR half
    the lesion (Dice 2/3), u1 perfect.
    """
    rng = np.random.default_rng(0)
    cases = []
    for s, split in (("s0", "train"), ("s1", "test"), ("s2", "test")):
        lab = _nii(tmp_path / "data" / s / "label.nii.gz", _label())
        for m in ("T1", "FLAIR"):
            img = _nii(tmp_path / "data" / s / f"{s}_{m}_img.nii.gz", rng.random(SHAPE).astype(np.float32))
            cases.append(Case(f"{s}_{m}", img, lab, m, "DS", "ms", split, True, s))
    lab = _nii(tmp_path / "data" / "u1" / "label.nii.gz", _label())
    img = _nii(tmp_path / "data" / "u1" / "img.nii.gz", rng.random(SHAPE).astype(np.float32))
    cases.append(Case("u1_FLAIR", img, lab, "FLAIR", "UN", "tumour", "test", False, "u1"))
    Collection("tiny", cases).save(tmp_path / "collection.json")

    pred = tmp_path / "pred"
    half = _label()
    half[5:7] = 0
    _nii(pred / "s1_T1.nii.gz", _label())
    _nii(pred / "s1_FLAIR_img.nii.gz", _label())  # fallback: named like the image
    _nii(pred / "s2_T1.nii.gz", np.zeros(SHAPE, np.uint8))
    _nii(pred / "s2_FLAIR.nii.gz", half)
    _nii(pred / "u1_FLAIR.nii.gz", _label() * 2)  # any value > 0 is lesion
    return tmp_path, tmp_path / "collection.json", pred


def _run(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["mome", *map(str, args)])
    code = 0
    try:
        cli_main.run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_evaluate_end_to_end(setup, monkeypatch, capsys):
    root, coll, pred = setup
    code, out, err = _run(monkeypatch, capsys, "evaluate", "--pred", pred, "--collection", coll,
                          "--out", root / "eval", "--name", "mysys")
    assert code == 0, err
    res = json.loads((root / "eval" / "evaluation.json").read_text())
    dice = {c["id"]: c["metrics"]["dice"] for c in res["cases"]}
    assert dice == pytest.approx({"s1_T1": 1.0, "s1_FLAIR": 1.0, "s2_T1": 0.0, "s2_FLAIR": 2 / 3, "u1_FLAIR": 1.0})
    by_id = {c["id"]: c for c in res["cases"]}
    diag = np.sqrt(12 ** 2 + 10 ** 2 + 16 ** 2)  # image diagonal with 2 mm slices
    assert by_id["s2_T1"]["metrics"]["hd95_mm"] == pytest.approx(diag) and by_id["s2_T1"]["details"]["empty"] == "pred"
    assert by_id["s2_FLAIR"]["details"]["spacing_mm"] == [1.0, 1.0, 2.0]
    assert by_id["s2_FLAIR"]["metrics"]["avd_ml"] == pytest.approx(32 * 2 / 1000)  # 32 voxels of 2 mm^3 missed
    levels = res["aggregates"]["dice"]["levels"]
    assert levels["seen"]["image"] == pytest.approx((2 + 2 / 3) / 4)
    assert levels["seen"]["task"] == pytest.approx((0.5 + (1 + 2 / 3) / 2) / 2)
    assert levels["unseen"] == pytest.approx({"image": 1.0, "task": 1.0, "dataset": 1.0, "n_images": 1,
                                              "n_tasks": 1, "n_datasets": 1})
    assert res["empty_counts"] == {"both": 0, "pred_only": 1, "ref_only": 0}
    assert res["conventions"]["both_empty"]["dice"] == 1.0 and "26-connected" in res["conventions"]["lesions"]
    assert res["name"] == "mysys" and res["config"]["split"] == "test" and "monai" in res["provenance"]["versions"]
    md = (root / "eval" / "evaluation.md").read_text()
    for text in ("# Evaluation: mysys", "## Per task", "## Per lesion group", "## Per modality", "Conventions",
                 "| 1 | DS | T1 | seen | ms | 2 | 0.5000 |"):
        assert text in md
    assert "evaluation.json" in out


def test_compare_cli(setup, monkeypatch, capsys):
    root, coll, pred = setup
    for name in ("a", "b"):
        evaluate_predictions(pred, coll, out_dir=root / name, name=name)
    code, out, err = _run(monkeypatch, capsys, "compare", f"A={root / 'a'}", f"B={root / 'b' / 'evaluation.json'}",
                          "--out", root / "cmp", "--reference", "B", "--ablation", f"full={root / 'a'}")
    assert code == 0, err
    md = (root / "cmp" / "tables.md").read_text()
    for title in ("Table 1", "Table 2", "Table 3", "Supplementary Table I"):
        assert title in md
    assert re.search(r"\| Image-level \| 0\.6667 \[[0-9.]+, [0-9.]+\] \| 0\.6667 \[[0-9.]+, [0-9.]+\] \|", md), md
    assert "95% bootstrap interval" in md
    assert (root / "cmp" / "radar.png").read_bytes()[:4] == b"\x89PNG"
    d = json.loads((root / "cmp" / "tables.json").read_text())
    assert d["tables"]["table2"]["rows"][0]["labels"] == ["UN"]
    code, _, err = _run(monkeypatch, capsys, "compare", "A", "--out", root / "cmp2")
    assert code == 1 and "NAME=PATH" in err and not (root / "cmp2").exists()


def test_missing_prediction_is_an_error_listing_ids(setup, monkeypatch, capsys):
    root, coll, pred = setup
    (pred / "s2_T1.nii.gz").unlink()
    code, _, err = _run(monkeypatch, capsys, "evaluate", "--pred", pred, "--collection", coll)
    assert code == 1 and "1 of 5 cases have no prediction" in err and "s2_T1" in err
    assert len(err.strip().splitlines()) == 1
    assert not (pred / "evaluation.json").exists() and not (pred / "evaluation.md").exists()
    code, _, err = _run(monkeypatch, capsys, "evaluate", "--pred", pred, "--collection", coll, "--allow-missing")
    assert code == 0, err
    res = json.loads((pred / "evaluation.json").read_text())
    assert [m["id"] for m in res["missing"]] == ["s2_T1"] and len(res["cases"]) == 4
    assert "s2_T1" in (pred / "evaluation.md").read_text()


def test_shape_and_affine_mismatch(setup, monkeypatch, capsys):
    root, coll, pred = setup
    _nii(pred / "s2_T1.nii.gz", np.zeros((12, 10, 9), np.uint8))
    code, _, err = _run(monkeypatch, capsys, "evaluate", "--pred", pred, "--collection", coll)
    assert code == 1 and "shape (12, 10, 9)" in err and "s2_T1" in err
    _nii(pred / "s2_T1.nii.gz", np.zeros(SHAPE, np.uint8), np.diag([1.0, 1.0, 1.0, 1.0]))
    code, _, err = _run(monkeypatch, capsys, "evaluate", "--pred", pred, "--collection", coll)
    assert code == 1 and "different affine" in err
    _nii(pred / "s2_T1.nii.gz", np.full(SHAPE, 0.3, np.float32))
    code, _, err = _run(monkeypatch, capsys, "evaluate", "--pred", pred, "--collection", coll)
    assert code == 1 and "non-integer" in err
    assert not list(pred.glob("evaluation*"))


def test_existing_output_needs_overwrite(setup, monkeypatch, capsys):
    root, coll, pred = setup
    (pred / "evaluation.md").write_text("keep me")
    code, _, err = _run(monkeypatch, capsys, "evaluate", "--pred", pred, "--collection", coll)
    assert code == 1 and "--overwrite" in err
    assert (pred / "evaluation.md").read_text() == "keep me" and not (pred / "evaluation.json").exists()
    code, _, err = _run(monkeypatch, capsys, "evaluate", "--pred", pred, "--collection", coll, "--overwrite")
    assert code == 0, err
    assert (pred / "evaluation.md").read_text().startswith("# Evaluation")


def test_api_selection_errors(setup):
    root, coll, pred = setup
    with pytest.raises(DataError, match="split 'val'"):
        evaluate_predictions(pred, coll, split="val")
    res = evaluate_predictions(pred, coll, split="all", allow_missing=True)
    assert {m["id"] for m in res.missing} == {"s0_T1", "s0_FLAIR"}  # train cases have no predictions
    with pytest.raises(DataError, match="no prediction .* matches any case"):
        evaluate_predictions(root / "data", coll, allow_missing=True)
