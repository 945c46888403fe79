"""Voxel uncertainty from MoME's expert disagreement (and mirror disagreement with TTA)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import mome
from mome.cli.main import app
from mome.errors import ConfigError
from mome.inference.predictor import Predictor
from mome.inference.uncertainty import (add_expert_moments, combine_with_mirrors, spread_from_moments,
                                        uncertainty_stats)


def test_weighted_spread_by_hand():
    # two experts, lesion probabilities 0.2 and 0.8 (logits [0, log(p / (1 - p))]), gate weights 1 and 3
    def logits(p):
        return torch.tensor([0.0, float(np.log(p / (1 - p)))]).reshape(1, 2, 1, 1, 1)

    gate = torch.ones(1, 2, 1, 1, 1)
    moments = add_expert_moments(None, logits(0.2), gate)
    moments = add_expert_moments(moments, logits(0.8), -3 * gate)  # a negative raw weight counts by its size
    mean = (0.2 + 3 * 0.8) / 4
    expected = np.sqrt((0.2 - mean) ** 2 / 4 + 3 * (0.8 - mean) ** 2 / 4)
    assert float(spread_from_moments(moments)) == pytest.approx(expected, abs=1e-6)
    # with mirrors: mean expert variance + variance of the passes' probabilities
    u = combine_with_mirrors([torch.tensor([0.04]), torch.tensor([0.0])], [torch.tensor([0.2]), torch.tensor([0.6])])
    assert float(u) == pytest.approx(np.sqrt(0.02 + 0.04), abs=1e-6)


def test_uncertainty_stats_per_lesion():
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[0:2, 0:2, 0:2] = 1  # 8 voxels
    mask[4:6, 4:6, 4] = 1  # 4 voxels
    u = np.zeros(mask.shape, np.float32)
    u[0:2, 0:2, 0:2] = 0.1
    u[4:6, 4:6, 4] = 0.4
    stats = uncertainty_stats(u, mask)
    assert stats["uncertainty_lesions"] == pytest.approx([0.1, 0.4])
    assert stats["uncertainty_scan"] == pytest.approx((8 * 0.1 + 4 * 0.4) / 12)
    assert uncertainty_stats(u, np.zeros_like(mask))["uncertainty_scan"] is None


def _image(shape=(20, 23, 17)):
    rng = np.random.default_rng(0)
    data = np.zeros(shape, np.float32)
    data[2:-2, 2:-2, 2:-2] = 100 + 5 * rng.standard_normal(tuple(s - 4 for s in shape))
    data[6:12, 8:15, 5:10] += 80
    return nib.Nifti1Image(data, np.diag([-1.0, 1.0, 1.0, 1.0]))


@pytest.mark.parametrize("tta", [False, True])
def test_predictor_returns_the_map_without_changing_the_mask(tta):
    torch.manual_seed(0)
    model = mome.create_model("tiny")
    options = dict(device="cpu", patch_size="whole", precision="fp32", spacing_mm=(1.0, 1.0, 1.0), tta=tta)
    plain = Predictor(model, **options).predict_image(_image())
    with_u = Predictor(model, uncertainty=True, **options).predict_image(_image())
    assert plain.uncertainty is None
    np.testing.assert_array_equal(plain.probabilities, with_u.probabilities)
    u = with_u.uncertainty
    assert u.shape == (20, 23, 17) and u.dtype == np.float32
    # a standard deviation of probabilities (<= 0.5), or with TTA the root of two such variances
    assert np.all(u >= 0) and np.all(u <= (np.sqrt(0.5) if tta else 0.5) + 1e-6) and u.max() > 0


def test_uncertainty_needs_a_mome():
    with pytest.raises(ConfigError, match="MoME"):
        Predictor(mome.create_model("tiny").experts[0], device="cpu", uncertainty=True)


def test_cli_writes_the_map_and_the_stats(tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "tiny"
    mome.save_model(mome.create_model("tiny"), folder,
                    metadata={"patch_size": [16, 16, 16], "spacing_mm": [1.0, 1.0, 1.0], "modalities": ["T1"]})
    nib.save(_image(), str(tmp_path / "scan.nii.gz"))
    out = tmp_path / "o" / "m.nii.gz"
    result = CliRunner().invoke(app, ["predict", "-i", str(tmp_path / "scan.nii.gz"), "-o", str(out), "--model",
                                      str(folder), "--device", "cpu", "--uncertainty", "--stats"])
    assert result.exit_code == 0, result.output
    u = nib.load(str(tmp_path / "o" / "m_uncertainty.nii.gz"))
    assert u.shape == (20, 23, 17) and np.allclose(u.affine, np.diag([-1.0, 1.0, 1.0, 1.0]))
    stats = json.loads((tmp_path / "o" / "m_stats.json").read_text())
    assert "uncertainty_scan" in stats and "uncertainty_lesions" in stats
