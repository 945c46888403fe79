"""The model shipped in the package: present, small, the default, and usable offline by `mome predict`."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from mome.weights.embedded import EMBEDDED, EMBEDDED_FOLDER, EMBEDDED_NAME


def test_embedded_model_is_registered_present_and_small():
    from mome.weights.registry import default_pretrained, resolve_model

    assert default_pretrained() is EMBEDDED and EMBEDDED.is_available()
    size = (EMBEDDED_FOLDER / "model.safetensors").stat().st_size
    assert size <= 40 * 2**20
    model, record = resolve_model(None)
    assert record["resolved"]["name"] == EMBEDDED_NAME
    assert record["patch_size"] == [32, 32, 32] and record["spacing_mm"] == [2.0, 2.0, 2.0]
    assert model.config.modalities == ["T1", "T2", "T1ce", "FLAIR", "DWI"]
    assert EMBEDDED.licence == "Apache-2.0" and "synthetic" in EMBEDDED.data


def test_predict_without_model_runs_offline_on_a_tiny_image(tmp_path, monkeypatch, capsys):
    from mome.cli.main import run

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rng = np.random.default_rng(0)
    shape = (15, 19, 15)  # odd sizes, 4 mm voxels: resampled to the model's 2 mm and back
    grid = np.stack(np.meshgrid(*[np.arange(n) - n / 2 for n in shape], indexing="ij"))
    brain = (grid**2 / np.array([6, 8, 6.0])[:, None, None, None] ** 2).sum(0) < 1
    image = np.where(brain, 100 + 5 * rng.standard_normal(shape), 0).astype(np.float32)
    image[6:9, 8:11, 6:9] += 80  # a bright blob
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = [-28, -36, -28]
    src = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(image, affine), str(src))
    out = tmp_path / "out" / "mask.nii.gz"
    monkeypatch.setattr("sys.argv", ["mome", "predict", "-i", str(src), "-o", str(out), "--stats", "--preview"])
    with pytest.raises(SystemExit) as exit_info:
        run()
    captured = capsys.readouterr()
    assert exit_info.value.code in (0, None), captured.err
    assert (captured.out + captured.err).count("trained on synthetic data") == 1
    mask = nib.load(str(out))
    assert mask.shape == shape and np.allclose(mask.affine, affine)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
    stats = json.loads((tmp_path / "out" / "mask_stats.json").read_text())
    assert stats["lesion_count"] >= 0
    assert (tmp_path / "out" / "mask_preview.png").stat().st_size > 1000
