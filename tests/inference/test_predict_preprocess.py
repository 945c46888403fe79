"""``--preprocess`` wiring: predict in 'MNI space', map the mask back onto the native grid.

The real MNI pipeline (registration with ANTs) is too slow for a unit test; a stand-in module with the
same API (``preprocess(image_path, out_dir, ...)`` -> result with ``image_path`` and ``brain_mask_path``;
``to_native(array, result, interpolation)`` -> nibabel image on the native grid) crops a box, so the
expected native mask is known exactly.
"""

from __future__ import annotations

import json

import sys
import types
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import mome
from mome.inference import Predictor

from inference_helpers import LESION_BOX, LESION_VOXELS, SHAPE, ThresholdNet, brain_image, oblique_affine, save_nii

CROP = (slice(1, 19), slice(2, 22), slice(1, 16))  # the 'MNI box' inside the native grid


@dataclass
class _Result:
    image_path: Path
    brain_mask_path: Path
    native_path: Path
    record_path: Path


def _fake_preprocess_module(calls: list) -> types.ModuleType:
    def preprocess(image_path, out_dir, label_path=None, overwrite=False, registration="auto", profile="mome"):
        calls.append(Path(image_path))
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True)
        native = nib.load(str(image_path))
        data = np.asarray(native.dataobj, np.float32)[CROP]
        affine = native.affine.copy()
        affine[:3, 3] = native.affine[:3, :3] @ [c.start for c in CROP] + native.affine[:3, 3]
        save_nii(out_dir / "image.nii.gz", data, affine)
        save_nii(out_dir / "brain.nii.gz", (data != 0).astype(np.uint8), affine)
        (out_dir / "preprocess.json").write_text(json.dumps({"registration": {"mode": registration},
                                                             "profile": profile}))
        return _Result(out_dir / "image.nii.gz", out_dir / "brain.nii.gz", Path(image_path),
                       out_dir / "preprocess.json")

    def to_native(array, result, interpolation="nearest", threshold=0.5):
        native = nib.load(str(result.native_path))
        out = np.zeros(native.shape, np.float32)
        out[CROP] = np.asarray(array)
        if interpolation == "linear" and threshold is not None:  # as the real one: a thresholded mask
            out = (out > threshold).astype(np.uint8)
        return nib.Nifti1Image(out, native.affine)

    module = types.ModuleType("mome.data.preprocess")
    module.preprocess, module.to_native = preprocess, to_native
    return module


def test_preprocess_maps_the_mask_back_to_native(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "mome.data.preprocess", _fake_preprocess_module(calls))
    affine = oblique_affine()
    img = nib.Nifti1Image(brain_image(), affine)
    predictor = Predictor(ThresholdNet(), device="cpu", patch_size=16, spacing_mm=None)
    result = mome.predict(img, model=predictor, preprocess=True)
    assert len(calls) == 1  # the in-memory image was written to a file for the pipeline
    assert result.mask.shape == SHAPE
    np.testing.assert_array_equal(result.mask.affine, affine)
    truth = np.zeros(SHAPE, np.uint8)
    truth[LESION_BOX] = 1
    np.testing.assert_array_equal(np.asarray(result.mask.dataobj), truth)
    assert result.stats["lesion_voxels"] == LESION_VOXELS and result.stats["preprocessed"] is True
    prob = np.asarray(result.probabilities.dataobj)
    assert prob.dtype == np.float32 and 0.0 < prob.max() < 1.0 and len(np.unique(prob)) > 2  # not a mask
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000
    assert result.stats["brain_volume_ml"] == pytest.approx((brain_image()[CROP] != 0).sum() * voxel_ml)


def test_cli_preprocess_flag(tmp_path, monkeypatch, capsys, tiny_model_dir):
    from test_predict_cli import mome_cli

    calls: list = []
    monkeypatch.setitem(sys.modules, "mome.data.preprocess", _fake_preprocess_module(calls))
    src = save_nii(tmp_path / "scan.nii.gz", brain_image(), oblique_affine())
    out = tmp_path / "scan_mask.nii.gz"
    code, _, err = mome_cli(monkeypatch, capsys, "predict", "-i", src, "-o", out, "-m", tiny_model_dir,
                            "--preprocess", "--stats")
    assert code == 0, err
    assert calls == [src]
    got = nib.load(str(out))
    assert got.shape == SHAPE
    np.testing.assert_array_equal(got.affine, nib.load(str(src)).affine)
    outside = np.ones(SHAPE, bool)
    outside[CROP] = False
    assert not np.asarray(got.dataobj)[outside].any()  # nothing predicted outside the 'MNI box'


@pytest.mark.slow
def test_real_mni_pipeline_round_trip(tmp_path, monkeypatch):
    """The real pipeline (ANTs, coarse settings): a bright blob in a 3 mm LAS scan of the MNI template is
    found in MNI space and mapped back onto the native grid (~10 s CPU)."""
    from mome.data import preprocess as pre
    from mome.data.mni import load_mni_crop, mni_crop_affine
    from mome.data.registration import RegistrationSettings
    from scipy import ndimage

    coarse = RegistrationSettings(iterations=(200, 100), shrink_factors=(8, 4), smoothing_sigmas=(3, 2),
                                  rigid_refinements=0)
    monkeypatch.setattr(pre, "RegistrationSettings", lambda: coarse)
    # native grid: 3 mm, LAS voxel order, shifted; the template resampled onto it
    shape = (56, 68, 56)
    native_affine = np.diag([-3.0, 3.0, 3.0, 1.0])
    native_affine[:3, 3] = [84.0, -118.0, -76.0]
    vox = np.linalg.inv(mni_crop_affine()) @ native_affine @ np.vstack([np.indices(shape).reshape(3, -1),
                                                                          np.ones(int(np.prod(shape)))])
    image = ndimage.map_coordinates(load_mni_crop("t1"), vox[:3], order=1).reshape(shape).astype(np.float32)
    blob = np.zeros(shape, bool)
    blob[20:26, 30:36, 30:35] = True
    image[blob] = 5.0 * image.max()
    src = save_nii(tmp_path / "scan.nii.gz", image, native_affine)
    predictor = Predictor(ThresholdNet(threshold=3.0), device="cpu", patch_size=(160, 196, 160), spacing_mm=None)
    result = mome.predict(src, model=predictor, preprocess=True)
    assert result.mask.shape == shape
    np.testing.assert_array_equal(result.mask.affine, nib.load(str(src)).affine)
    mask = np.asarray(result.mask.dataobj) > 0
    dice = 2 * (mask & blob).sum() / (mask.sum() + blob.sum())
    assert dice > 0.7, dice
    assert result.stats["lesion_count"] == 1
    assert 1500 < result.stats["brain_volume_ml"] < 2300  # MNI152 brain mask: 1883 ml
