"""``mome bids``: inputs found with pybids, BIDS-Derivatives outputs, shards, resuming, the group TSV, and the
BIDS validator on both datasets (the refused inputs are named bad inputs: tests/reliability/bad_inputs.py)."""

from __future__ import annotations

import json
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mome.bids.layout import check_bids_root, find_units, open_layout, parse_shard, select_subjects
from mome.cli.main import app
from mome.errors import ConfigError


def _img(path, seed, shape=(20, 23, 17), affine=None, volumes=None):
    rng = np.random.default_rng(seed)
    base = np.zeros(shape, np.float32)
    base[2:-2, 2:-2, 2:-2] = 100 + 5 * rng.standard_normal(tuple(s - 4 for s in shape))
    data = base if volumes is None else np.stack([base * (1 + 0.1 * v) for v in range(volumes)], axis=-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    if volumes is not None:
        img.header.set_zooms((1.0, 1.0, 1.0, 2.0))  # a repetition time of 2 s, as the bold sidecar says
    nib.save(img, str(path))
    return path


def make_dataset(root, n_subjects=5):
    """sub-01..: T1w + FLAIR; sub-01 has two sessions, the second with two FLAIR runs and a 4D dwi (b 0, 1000,
    1000, 2000); the last subject has only a bold series (nothing to segment)."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.9.0",
                                                               "Authors": ["a", "b"]}))
    (root / "README").write_text("a tiny test dataset for mome bids, with enough words in it to be a readme\n")
    (root / "participants.tsv").write_text("participant_id\n" + "".join(f"sub-{i:02d}\n"
                                                                        for i in range(1, n_subjects + 1)))
    for i in range(1, n_subjects):
        sessions = ["1", "2"] if i == 1 else [None]
        for ses in sessions:
            folder = root / f"sub-{i:02d}" / (f"ses-{ses}" if ses else "")
            stem = f"sub-{i:02d}" + (f"_ses-{ses}" if ses else "")
            _img(folder / "anat" / f"{stem}_T1w.nii.gz", i)
            _img(folder / "anat" / f"{stem}_FLAIR.nii.gz", i + 100)
            if ses == "2":
                _img(folder / "anat" / f"{stem}_run-2_FLAIR.nii.gz", i + 200)
                dwi = _img(folder / "dwi" / f"{stem}_dwi.nii.gz", i + 300, volumes=4)
                dwi.with_name(f"{stem}_dwi.bval").write_text("0 1000 1000 2000\n")
                dwi.with_name(f"{stem}_dwi.bvec").write_text("0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    last = f"sub-{n_subjects:02d}"
    _img(root / last / "func" / f"{last}_task-rest_bold.nii.gz", 999, volumes=3)
    (root / last / "func" / f"{last}_task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 2.0,
                                                                                 "TaskName": "rest"}))
    return root


@pytest.fixture(scope="module")
def tiny(tiny_mome_folder):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_mome_folder
    torch.set_num_threads(previous)


def _run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_units_sessions_runs_and_4d_dwi(tmp_path):
    root = make_dataset(tmp_path / "bids")
    layout = open_layout(check_bids_root(root))
    units = {u.name: u for u in find_units(layout, select_subjects(layout, None, None))}
    assert sorted(units) == ["sub-01_ses-1", "sub-01_ses-2", "sub-02", "sub-03", "sub-04", "sub-05"]
    ses2 = units["sub-01_ses-2"]
    assert [s.modality for s in ses2.sequences] == ["T1", "FLAIR", "DWI"]
    assert ses2.sequences[1].path.name == "sub-01_ses-2_FLAIR.nii.gz"  # the first FLAIR in sorted order
    assert [p.name for p in ses2.unused] == ["sub-01_ses-2_run-2_FLAIR.nii.gz"]
    assert ses2.sequences[2].dwi_volumes == [1, 2]  # the b = 1000 volumes; b 0 and 2000 left out
    assert units["sub-05"].sequences == []


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_are_disjoint_and_complete(tmp_path, n):
    root = make_dataset(tmp_path / "bids")
    layout = open_layout(root)
    shares = [select_subjects(layout, None, (k, n)) for k in range(1, n + 1)]
    flat = [s for share in shares for s in share]
    assert sorted(flat) == sorted(layout.get_subjects()) and len(flat) == len(set(flat))


@pytest.mark.parametrize("text", ["0/2", "3/2", "a/b", "2"])
def test_bad_shards(text):
    with pytest.raises(ConfigError):
        parse_shard(text)


def test_participant_shards_resume_and_group(tmp_path, tiny):
    root = make_dataset(tmp_path / "bids")
    out = tmp_path / "deriv"
    for k in (1, 2):  # shard 1 with the HTML reports, shard 2 without
        code, output = _run("bids", root, out, "participant", "--shard", f"{k}/2", "--model", tiny, "--device", "cpu",
                            *(["--report"] if k == 1 else []))
        assert code == 0, output
    reports = sorted(p.name for p in out.glob("*.html"))
    assert reports == ["sub-01_ses-1.html", "sub-01_ses-2.html", "sub-03.html"]  # shard 1: sub-01, sub-03, sub-05
    masks = sorted(p.name for p in out.rglob("*_desc-lesion_mask.nii.gz"))
    assert masks == ["sub-01_ses-1_space-orig_desc-lesion_mask.nii.gz", "sub-01_ses-2_space-orig_desc-lesion_mask.nii.gz",
                     "sub-02_space-orig_desc-lesion_mask.nii.gz", "sub-03_space-orig_desc-lesion_mask.nii.gz",
                     "sub-04_space-orig_desc-lesion_mask.nii.gz"]
    mask = out / "sub-01" / "ses-2" / "anat" / masks[1]
    src = nib.load(str(root / "sub-01" / "ses-2" / "anat" / "sub-01_ses-2_T1w.nii.gz"))
    assert nib.load(str(mask)).shape == src.shape and np.allclose(nib.load(str(mask)).affine, src.affine)
    meta = json.loads(mask.with_name(mask.name.replace(".nii.gz", ".json")).read_text())
    assert meta["SpatialReference"] == "bids:raw:sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz"
    assert [s["modality"] for s in meta["MomeSettings"]["sequences"]] == ["T1", "FLAIR", "DWI"]
    assert meta["MomeSettings"]["fusion"] == "weighted" and len(meta["LesionStatistics"]["sequences"]) == 3
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "mome"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    code, output = _run("bids", root, out, "participant", "--model", tiny, "--device", "cpu")
    assert code == 0 and "0 segmented, 5 already done" in output, output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before  # a rerun did nothing
    code, output = _run("bids", root, out, "group")
    assert code == 0, output
    rows = [line.split("\t") for line in (out / "lesion_stats.tsv").read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("sub-01", "ses-1", "ok"), ("sub-01", "ses-2", "ok"), ("sub-02", "n/a", "ok"), ("sub-03", "n/a", "ok"),
        ("sub-04", "n/a", "ok"), ("sub-05", "n/a", "missing")]
    volume = json.loads((out / "sub-02" / "anat" / "sub-02_space-orig_desc-lesion_mask.json").read_text())[
        "LesionStatistics"]["lesion_volume_ml"]
    assert float(rows[2][header.index("lesion_volume_ml")]) == pytest.approx(volume, rel=1e-5)  # 6 digits
    code, output = _run("bids", root, out, "group")
    assert code == 0 and "up to date" in output
    cohort = (out / "cohort.html").read_text()
    assert '<a href="sub-03.html">sub-03</a>' in cohort and '<a href="sub-02.html">' not in cohort
    code, output = _run("bids", root, out, "participant", "--model", tiny, "--device", "cpu", "--report")
    assert code == 0 and "sub-02: already done; report written" in output, output  # no prediction again
    assert len(list(out.glob("*.html"))) == 6 and (out / "niivue.umd.js").is_file()
    if shutil.which("bids-validator-deno") is None:
        pytest.skip("bids-validator-deno is not installed")
    for dataset in (root, out):
        run = subprocess.run(["bids-validator-deno", "--format", "json", str(dataset)], capture_output=True,
                             text=True, timeout=300)
        issues = json.loads(run.stdout)["issues"]["issues"]
        errors = [(i["code"], i.get("location")) for i in issues if i["severity"] == "error"]
        assert errors == [], (dataset, errors)


def test_overwrite_replaces_derivatives_of_other_settings(tmp_path, tiny):
    root = make_dataset(tmp_path / "bids", n_subjects=2)
    out = tmp_path / "deriv"
    assert _run("bids", root, out, "participant", "--model", tiny, "--device", "cpu")[0] == 0
    sidecar = out / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_space-orig_desc-lesion_mask.json"
    code, output = _run("bids", root, out, "participant", "--model", tiny, "--device", "cpu", "--fusion", "max",
                        "--overwrite")
    assert code == 0 and "2 segmented, 0 already done" in output, output
    assert json.loads(sidecar.read_text())["MomeSettings"]["fusion"] == "max"


def test_a_failing_subject_does_not_stop_the_others(tmp_path, tiny):
    root = make_dataset(tmp_path / "bids", n_subjects=3)
    flair = root / "sub-02" / "anat" / "sub-02_FLAIR.nii.gz"
    _img(flair, 7, affine=np.diag([2.0, 1.0, 1.0, 1.0]))  # sub-02's sequences on two grids
    out = tmp_path / "deriv"
    code, output = _run("bids", root, out, "participant", "--model", tiny, "--device", "cpu")
    assert code == 1 and "sub-02: " in output and "not on the grid" in output, output
    assert not (out / "sub-02").exists() and (out / "sub-01").is_dir()


def test_backend_option(tmp_path, tiny):
    """--backend reaches the predictor: a bad name fails before anything is written; torch runs."""
    root = make_dataset(tmp_path / "bids", n_subjects=2)
    out = tmp_path / "deriv"
    result = CliRunner().invoke(app, [str(a) for a in ("bids", root, out, "participant", "--model", tiny,
                                                       "--device", "cpu", "--backend", "onnx")])
    assert result.exit_code != 0 and "unknown backend" in str(result.exception) and not out.exists()
    code, output = _run("bids", root, out, "participant", "--model", tiny, "--device", "cpu", "--backend", "torch")
    assert code == 0 and "2 segmented" in output, output
