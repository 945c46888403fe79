"""``mome predict``: geometry of the outputs, the optional files, bad inputs, batch mode.

The CLI is run in-process through ``mome.cli.main.run`` (the console-script entry), so error handling
(one line on stderr, exit code) is tested exactly as a user meets it.
"""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from inference_helpers import SHAPE, brain_image, constant_gate_mome, mome_cli, oblique_affine, save_nii


def test_oblique_odd_image_comes_back_with_identical_geometry(tmp_path, monkeypatch, capsys, tiny_model_dir):
    src = save_nii(tmp_path / "scan.nii.gz", brain_image(), oblique_affine(), qform_code=1, sform_code=2)
    out = tmp_path / "res" / "scan_mask.nii.gz"
    code, stdout, err = mome_cli(monkeypatch, capsys, "predict", "-i", src, "-o", out, "--model", tiny_model_dir,
                                 "--probabilities", "--device", "cpu")
    assert code == 0, err
    ref = nib.load(str(src))
    for path in (out, tmp_path / "res" / "scan_mask_probabilities.nii.gz"):
        img = nib.load(str(path))
        assert img.shape == SHAPE
        np.testing.assert_array_equal(img.affine, ref.affine)
        assert int(img.header["sform_code"]) == 2 and int(img.header["qform_code"]) == 1
    mask = np.asarray(nib.load(str(out)).dataobj)
    prob = np.asarray(nib.load(str(tmp_path / "res" / "scan_mask_probabilities.nii.gz")).dataobj)
    assert mask.dtype == np.uint8 and prob.dtype == np.float32
    np.testing.assert_array_equal(mask, (prob > 0.5).astype(np.uint8))  # 2 classes: argmax = p > 0.5
    assert f"mask: {out}" in stdout


@pytest.mark.parametrize("activation,bias,share", [
    ("softmax", [0.0, np.log(3.0), 0.0, 0.0, 0.0], [1 / 7, 3 / 7, 1 / 7, 1 / 7, 1 / 7]),
    ("identity", [2.0, -1.0, 0.5, 0.5, 1.0], [0.4, 0.2, 0.1, 0.1, 0.2]),
])
def test_stats_preview_probabilities_files(tmp_path, monkeypatch, capsys, activation, bias, share):
    import mome

    folder = mome.save_model(constant_gate_mome(bias, activation), tmp_path / "model",
                             metadata={"patch_size": [16, 16, 16], "spacing_mm": [0.9, 1.3, 2.0]})
    affine = oblique_affine(spacing=(0.9, 1.3, 2.0))
    src = save_nii(tmp_path / "case.nii", brain_image(), affine)
    out = tmp_path / "case_seg.nii"
    code, stdout, err = mome_cli(monkeypatch, capsys, "predict", "-i", src, "-o", out, "-m", folder, "--tta",
                                 "--stats", "--preview", "--probabilities", "--precision", "fp32")  # exact shares
    assert code == 0, err
    files = {p.name for p in tmp_path.iterdir()}
    assert {"case_seg.nii", "case_seg_probabilities.nii", "case_seg_stats.json", "case_seg_preview.png"} <= files
    stats = json.loads((tmp_path / "case_seg_stats.json").read_text())
    mask = np.asarray(nib.load(str(out)).dataobj)
    voxel_ml = 0.9 * 1.3 * 2.0 / 1000
    assert stats["lesion_voxels"] == int(mask.sum())
    assert stats["lesion_volume_ml"] == pytest.approx(mask.sum() * voxel_ml)
    assert stats["brain_volume_ml"] == pytest.approx((brain_image() != 0).sum() * voxel_ml)
    assert stats["gate_activation"] == activation
    assert list(stats["expert_weight_share"].values()) == pytest.approx(share, abs=1e-5)
    assert stats["implicit_modality"] == mome.create_model("tiny").config.modalities[int(np.argmax(share))]
    assert stats["settings"]["tta"] is True and stats["settings"]["resampled"] is False
    assert (tmp_path / "case_seg_preview.png").read_bytes()[:4] == b"\x89PNG"
    assert "gate favours" in stdout


def _bad_inputs(tmp):
    (tmp / "notes.txt").write_text("not an image")
    save_nii(tmp / "flat.nii.gz", np.ones((8, 9), np.float32))
    save_nii(tmp / "series.nii.gz", np.ones((8, 9, 7, 2), np.float32))
    nan = brain_image()
    nan[5, 5, 5] = np.nan
    save_nii(tmp / "nan.nii.gz", nan)
    inf = brain_image()
    inf[5, 5, 5] = np.inf
    save_nii(tmp / "inf.nii.gz", inf)
    save_nii(tmp / "zeros.nii.gz", np.zeros(SHAPE, np.float32))
    (tmp / "corrupt.nii.gz").write_bytes(b"\x1f\x8b garbage")
    return {
        "missing.nii.gz": "does not exist",
        "notes.txt": "not a NIfTI file",
        "flat.nii.gz": "one 3D volume",
        "series.nii.gz": "one 3D volume",
        "nan.nii.gz": "NaN or infinite",
        "inf.nii.gz": "NaN or infinite",
        "zeros.nii.gz": "all zeros",
        "corrupt.nii.gz": "could not be read",
    }


def test_bad_inputs_fail_with_one_line_and_write_nothing(tmp_path, monkeypatch, capsys, tiny_model_dir):
    inputs = tmp_path / "in"
    inputs.mkdir()
    cases = _bad_inputs(inputs)
    out_dir = tmp_path / "out"
    for name, message in cases.items():
        code, _, err = mome_cli(monkeypatch, capsys, "predict", "-i", inputs / name, "-o", out_dir / "m.nii.gz",
                                "--model", tiny_model_dir, "--stats", "--preview", "--probabilities")
        assert code == 1, name
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mome: error:") and message in lines[0], (name, err)
        assert not out_dir.exists(), name


def test_bad_models_and_existing_outputs(tmp_path, monkeypatch, capsys, tiny_model_dir):
    src = save_nii(tmp_path / "scan.nii.gz", brain_image(), oblique_affine())
    out = tmp_path / "out" / "m.nii.gz"
    for model, message in [("no-such-model", "unknown model 'no-such-model'"),
                           ("tiny", "architecture preset with random weights"),
                           (tmp_path / "absent_dir", "does not exist")]:
        code, _, err = mome_cli(monkeypatch, capsys, "predict", "-i", src, "-o", out, "--model", model)
        assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
        assert not out.parent.exists()
    out.parent.mkdir()
    out.write_bytes(b"previous result")
    code, _, err = mome_cli(monkeypatch, capsys, "predict", "-i", src, "-o", out, "--model", tiny_model_dir)
    assert code == 1 and "already exists" in err and "--overwrite" in err
    assert out.read_bytes() == b"previous result"
    # a sibling that exists blocks too, before anything is written
    out.unlink()
    (tmp_path / "out" / "m_stats.json").write_text("{}")
    code, _, err = mome_cli(monkeypatch, capsys, "predict", "-i", src, "-o", out, "--model", tiny_model_dir,
                            "--stats")
    assert code == 1 and "m_stats.json already exists" in err and not out.exists()
    code, _, err = mome_cli(monkeypatch, capsys, "predict", "-i", src, "-o", out, "--model", tiny_model_dir,
                            "--stats", "--overwrite")
    assert code == 0, err
    assert out.exists() and json.loads((tmp_path / "out" / "m_stats.json").read_text())["lesion_count"] >= 0
    code, _, err = mome_cli(monkeypatch, capsys, "predict", "-i", src, "-o", tmp_path / "m.txt",
                            "--model", tiny_model_dir)
    assert code == 1 and "must end in .nii or .nii.gz" in err


def test_no_default_model_is_a_clear_error(tmp_path, monkeypatch, capsys, clean_registry):
    for entry in clean_registry.list_pretrained():
        clean_registry.unregister_pretrained(entry.name)
    src = save_nii(tmp_path / "scan.nii.gz", brain_image(), np.eye(4))
    code, _, err = mome_cli(monkeypatch, capsys, "predict", "-i", src, "-o", tmp_path / "m.nii.gz")
    assert code == 1 and "no default model is installed; pass --model DIR" in err


def test_batch_mode_one_bad_file_others_complete(tmp_path, monkeypatch, capsys, tiny_model_dir):
    inputs = tmp_path / "in"
    inputs.mkdir()
    save_nii(inputs / "a.nii.gz", brain_image(seed=1), oblique_affine())
    save_nii(inputs / "b.nii", brain_image(seed=2), np.diag([-1.0, -1.0, 1.0, 1.0]))
    save_nii(inputs / "bad.nii.gz", np.zeros(SHAPE, np.float32))
    (inputs / "README.txt").write_text("ignored: not NIfTI")
    out = tmp_path / "out"
    code, stdout, err = mome_cli(monkeypatch, capsys, "predict", "-i", inputs, "-o", out, "-m", tiny_model_dir,
                                 "--stats")
    assert code == 1
    assert "bad.nii.gz" in err and "all zeros" in err and "1 image(s) failed" in err
    assert {p.name for p in out.iterdir()} == {"a.nii.gz", "b.nii", "a_stats.json", "b_stats.json", "stats.csv"}
    for name in ("a.nii.gz", "b.nii"):
        ref, got = nib.load(str(inputs / name)), nib.load(str(out / name))
        assert got.shape == ref.shape
        np.testing.assert_array_equal(got.affine, ref.affine)
    rows = {r["image"]: r for r in csv.DictReader((out / "stats.csv").open())}
    assert set(rows) == {"a.nii.gz", "b.nii", "bad.nii.gz"}
    assert rows["a.nii.gz"]["status"] == "ok" and rows["bad.nii.gz"]["status"] == "error"
    assert "all zeros" in rows["bad.nii.gz"]["error"]
    a_mask = np.asarray(nib.load(str(out / "a.nii.gz")).dataobj)
    assert int(rows["a.nii.gz"]["lesion_voxels"]) == int(a_mask.sum())
    assert "2 of 3 images segmented" in stdout
    # a second run without --overwrite refuses the aggregate CSV before any work
    code, _, err = mome_cli(monkeypatch, capsys, "predict", "-i", inputs, "-o", out, "-m", tiny_model_dir)
    assert code == 1 and "stats.csv already exists" in err
    code, _, err = mome_cli(monkeypatch, capsys, "predict", "-i", inputs, "-o", inputs, "-m", tiny_model_dir)
    assert code == 1 and "output folder is the input folder" in err


def test_default_model_is_used_and_its_notice_printed_once(tmp_path, monkeypatch, capsys, tiny_model_dir,
                                                           clean_registry):
    from mome.weights.registry import PretrainedModel

    for entry in clean_registry.list_pretrained():
        clean_registry.unregister_pretrained(entry.name)
    clean_registry.register_pretrained(PretrainedModel(
        name="unit-default", description="d", training="t", data="synthetic", licence="Apache-2.0",
        source="tests", folder=tiny_model_dir, default=True, notice="trained on synthetic data only"))
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.nii.gz", "b.nii.gz"):
        save_nii(inputs / name, brain_image(), np.eye(4))
    code, stdout, err = mome_cli(monkeypatch, capsys, "predict", "-i", inputs, "-o", tmp_path / "out")
    assert code == 0, err
    assert stdout.count("trained on synthetic data only") == 1 and "model: unit-default" in stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(tmp_path, monkeypatch, capsys, tiny_model_dir):
    src = save_nii(tmp_path / "scan.nii.gz", brain_image(), np.eye(4))
    code, _, err = mome_cli(monkeypatch, capsys, "predict", "-i", src, "-o", tmp_path / "m.nii.gz",
                            "-m", tiny_model_dir, "--device", "cuda")
    assert code == 1 and "CUDA is not available" in err and not (tmp_path / "m.nii.gz").exists()
