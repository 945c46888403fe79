"""Unusual but valid inputs keep working: the mask comes back in the input's exact shape and affine."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest

from bad_inputs import brain
from reliability_helpers import run_cli


def _oblique() -> np.ndarray:
    a = math.radians(20)
    aff = np.eye(4)
    aff[:3, :3] = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]]) @ np.diag(
        [0.9, 1.2, 1.5])
    aff[:3, 3] = [-20, 11.5, 3]
    return aff


def _permuted() -> np.ndarray:  # voxel axes (S, L, A): not RAS, flipped
    aff = np.zeros((4, 4))
    aff[2, 0], aff[0, 1], aff[1, 2], aff[3, 3] = 1.1, -0.9, 1.0, 1.0
    return aff


def _scaled_int16(path):
    img = nib.Nifti1Image(np.round(brain() * 10).astype(np.int16), np.eye(4))
    img.header.set_slope_inter(0.1, 5.0)
    return img


CASES = {
    "NIfTI-2": lambda p: nib.Nifti2Image(brain(), np.eye(4)),
    "uncompressed .nii": lambda p: nib.Nifti1Image(brain(), np.eye(4)),
    "scaled int16": _scaled_int16,
    "uint8": lambda p: nib.Nifti1Image((brain() / 2).astype(np.uint8), np.eye(4)),
    "oblique anisotropic": lambda p: nib.Nifti1Image(brain(), _oblique()),
    "permuted flipped axes": lambda p: nib.Nifti1Image(brain(), _permuted()),
    "4D with one volume": lambda p: nib.Nifti1Image(brain()[..., None], np.eye(4)),
    "qform only": lambda p: _qform_only(),
}


def _qform_only():
    img = nib.Nifti1Image(brain(), _oblique())
    img.set_sform(None, code=0)
    img.set_qform(_oblique(), code=1)
    return img


@pytest.mark.parametrize("name", list(CASES))
def test_valid_input_round_trips(name, tmp_path, tiny_model, monkeypatch, capsys):
    folder = tmp_path / "scans ü é"
    folder.mkdir()
    path = folder / ("scan ü.nii" if name == "uncompressed .nii" else "scan ü.nii.gz")
    nib.save(CASES[name](path), str(path))
    out = folder / "out" / "mask ü.nii.gz"
    code, stdout, err = run_cli(monkeypatch, capsys, "predict", "-i", path, "-o", out, "--model", tiny_model,
                                "--device", "cpu")
    assert code == 0, err
    ref, got = nib.load(str(path)), nib.load(str(out))
    assert got.shape == ref.shape[:3]
    np.testing.assert_allclose(got.affine, ref.affine, atol=1e-5)
    assert set(np.unique(np.asarray(got.dataobj))) <= {0, 1}
