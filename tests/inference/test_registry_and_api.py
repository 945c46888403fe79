"""Pretrained-model registry and model resolution; the ``mome.predict`` Python API."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

import mome
from mome.errors import CheckpointError, ConfigError, InputError
from mome.inference import PredictionResult, Predictor
from mome.weights.registry import (
    PretrainedModel, get_pretrained, list_pretrained, register_pretrained, resolve_model,
    resolve_model_folder,
)

from inference_helpers import LESION_VOXELS, SHAPE, ThresholdNet, brain_image, oblique_affine, save_nii


def _entry(name, folder, default=False, **kw):
    return PretrainedModel(name=name, description="test model", training="tiny preset, 0 epochs",
                           data="none", licence="Apache-2.0", source="tests", folder=folder,
                           default=default, **kw)


def test_resolve_folder_registered_name_and_default(tiny_model_dir, clean_registry):
    model, record = resolve_model(tiny_model_dir)
    assert isinstance(model, mome.model.MoME) and not model.training
    assert record["patch_size"] == [16, 16, 16] and record["resolved"]["name"] is None
    for existing in list_pretrained():  # the package's own default (embedded model) steps aside
        clean_registry.unregister_pretrained(existing.name)
    register_pretrained(_entry("unit-default", lambda: tiny_model_dir, default=True,
                               notice="trained on synthetic data"))
    assert [m.name for m in list_pretrained()][-1] == "unit-default"
    folder, entry = resolve_model_folder(None)
    assert folder == tiny_model_dir and entry.name == "unit-default"
    model, record = resolve_model("unit-default")
    assert record["resolved"] == {"name": "unit-default", "folder": str(tiny_model_dir),
                                  "notice": "trained on synthetic data"}
    with pytest.raises(ConfigError, match="already registered"):
        register_pretrained(_entry("unit-default", tiny_model_dir))
    with pytest.raises(ConfigError, match="already the default"):
        register_pretrained(_entry("second-default", tiny_model_dir, default=True))


def test_resolution_errors(tmp_path, tiny_model_dir, clean_registry):
    for entry in list_pretrained():
        clean_registry.unregister_pretrained(entry.name)
    with pytest.raises(ConfigError, match="no default model is installed; pass --model DIR"):
        resolve_model(None)
    register_pretrained(_entry("absent", tmp_path / "nowhere", how_to_get="run `mome weights download`"))
    with pytest.raises(CheckpointError, match="not on this machine.*mome weights download"):
        resolve_model("absent")
    with pytest.raises(ConfigError, match=r"unknown model 'nope'; known pretrained models: absent\. "
                                          r"A model folder path is also accepted"):
        resolve_model("nope")
    with pytest.raises(ConfigError, match="architecture preset with random weights"):
        resolve_model("paper")
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_model(tmp_path / "missing")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="is a file"):
        resolve_model(tmp_path / "file.bin")
    assert get_pretrained("absent").is_available() is False


def test_predict_api_with_path_and_nibabel_image(tmp_path, tiny_model_dir):
    src = save_nii(tmp_path / "scan.nii.gz", brain_image(), oblique_affine())
    result = mome.predict(src, model=tiny_model_dir, device="cpu")
    assert isinstance(result, PredictionResult)
    ref = nib.load(str(src))
    for img in (result.mask, result.probabilities):
        assert img.shape == SHAPE
        np.testing.assert_array_equal(img.affine, ref.affine)
    assert result.stats["input"] == str(src) and result.stats["model"] == str(tiny_model_dir)
    assert set(result.stats["expert_weight_share"]) == set(mome.create_model("tiny").config.modalities)
    in_memory = mome.predict(ref, model=str(tiny_model_dir), device="cpu")
    np.testing.assert_array_equal(np.asarray(in_memory.mask.dataobj), np.asarray(result.mask.dataobj))
    assert in_memory.stats["input"] is None


def test_predict_api_stats_with_a_controlled_network():
    # a pointwise threshold network segments exactly the bright box: volume = 210 voxels x voxel volume
    affine = oblique_affine(spacing=(1.1, 0.8, 1.5))
    img = nib.Nifti1Image(brain_image(), affine)
    predictor = Predictor(ThresholdNet(), device="cpu", patch_size=16, spacing_mm=None)
    result = mome.predict(img, model=predictor)
    assert result.stats["lesion_voxels"] == LESION_VOXELS and result.stats["lesion_count"] == 1
    assert result.stats["lesion_volume_ml"] == pytest.approx(LESION_VOXELS * 1.1 * 0.8 * 1.5 / 1000)
    assert "expert_weight_share" not in result.stats  # not a MoME: no gates


def test_predict_api_loaded_network_and_bad_inputs(tmp_path):
    torch.manual_seed(0)
    net = mome.create_model("tiny")
    img = nib.Nifti1Image(brain_image(), np.eye(4))
    result = mome.predict(img, model=net, device="cpu", patch_size=16)
    assert result.mask.shape == SHAPE
    with pytest.raises(InputError, match="all zeros"):
        mome.predict(nib.Nifti1Image(np.zeros(SHAPE, np.float32), np.eye(4)), model=net)
    nan = brain_image()
    nan[1, 1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        mome.predict(nib.Nifti1Image(nan, np.eye(4)), model=net)
    with pytest.raises(InputError, match="3D"):
        mome.predict(nib.Nifti1Image(np.ones((5, 5, 5, 2), np.float32), np.eye(4)), model=net)
    with pytest.raises(InputError, match="does not exist"):
        mome.predict(tmp_path / "absent.nii.gz", model=net)
    with pytest.raises(InputError, match="nibabel image"):
        mome.predict(np.ones(SHAPE), model=net)
