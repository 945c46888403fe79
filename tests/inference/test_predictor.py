"""Predictor: padding/cropping, sliding-window stitching, TTA, resampling, reorientation, devices."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest
import torch

import mome
from mome.data.intensity import zscore_in_brain
from mome.errors import ConfigError, InputError
from mome.inference.geometry import Reorientation, pad_to_multiple
from mome.inference.predictor import Predictor, resolve_device

from inference_helpers import LESION_BOX, SHAPE, ThresholdNet, brain_image, oblique_affine, sagittal_affine


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(3)
    return mome.create_model("tiny").eval()


def _by_hand(model, image, flips=((),)):
    """Softmax of the full-resolution logits on the centred zero-padded volume, averaged over flips."""
    x = torch.from_numpy(zscore_in_brain(image))[None, None]
    padded, crop = pad_to_multiple(x, model.config.expert.divisor())
    model.set_deep_supervision(False)
    with torch.no_grad():
        logits = sum(torch.flip(model(torch.flip(padded, f) if f else padded).logits[0], f) if f
                     else model(padded).logits[0] for f in flips) / len(flips)
    return torch.softmax(logits[0][(slice(None), *crop)], 0).numpy()


def test_single_window_equals_direct_forward_on_padded_volume(tiny):
    image = brain_image()
    pred = Predictor(tiny, device="cpu", patch_size=32, spacing_mm=None).predict_array(image)
    assert pred.probabilities.shape == (2, *SHAPE) and pred.probabilities.dtype == np.float32
    np.testing.assert_allclose(pred.probabilities, _by_hand(tiny, image), atol=1e-5)
    np.testing.assert_allclose(pred.probabilities.sum(0), 1.0, atol=1e-5)
    assert pred.gates.shape == (5, 2, *SHAPE)
    assert pred.expert_names == tiny.config.modalities


def test_tta_averages_logits_over_the_eight_mirrors(tiny):
    image = brain_image(seed=1)
    flips = [()] + [tuple(a) for r in (1, 2, 3) for a in itertools.combinations((2, 3, 4), r)]
    assert len(flips) == 8
    pred = Predictor(tiny, device="cpu", patch_size=32, spacing_mm=None, tta=True).predict_array(image)
    np.testing.assert_allclose(pred.probabilities, _by_hand(tiny, image, flips), atol=1e-5)
    plain = Predictor(tiny, device="cpu", patch_size=32, spacing_mm=None).predict_array(image)
    assert np.abs(plain.probabilities - pred.probabilities).max() > 1e-3  # TTA really changed something


@pytest.mark.parametrize("overlap", [0.0, 0.5])
def test_sliding_windows_are_stitched_in_place(overlap):
    # a pointwise network gives the same answer whatever the windowing: any misplaced window shows
    image = brain_image()
    pred = Predictor(ThresholdNet(), device="cpu", patch_size=8, spacing_mm=None,
                     overlap=overlap).predict_array(image)
    z = zscore_in_brain(image)
    expected = 1 / (1 + np.exp(-4.0 * (z - 1.0)))
    np.testing.assert_allclose(pred.probabilities[1], expected, atol=1e-5)
    truth = np.zeros(SHAPE, bool)
    truth[LESION_BOX] = True
    np.testing.assert_array_equal(pred.mask.astype(bool), truth)


def test_resampling_to_model_spacing_keeps_input_grid():
    # 1 x 1 x 2 mm input, model at 1 mm: resampled for the network, probabilities resampled back
    image = brain_image()
    pred = Predictor(ThresholdNet(), device="cpu", patch_size=16, spacing_mm=(1, 1, 1)).predict_array(
        image, spacing=(1.0, 1.0, 2.0))
    assert pred.info["resampled"] and pred.probabilities.shape == (2, *SHAPE)
    truth = np.zeros(SHAPE, bool)
    truth[LESION_BOX] = True
    dice = 2 * (pred.mask.astype(bool) & truth).sum() / (pred.mask.sum() + truth.sum())
    assert dice > 0.95
    # within 10 % of the model spacing: no resampling
    near = Predictor(ThresholdNet(), device="cpu", patch_size=16, spacing_mm=(1, 1, 1)).predict_array(
        image, spacing=(1.05, 0.95, 1.0))
    assert not near.info["resampled"]


def test_reorientation_round_trip_is_exact():
    assert nib.aff2axcodes(sagittal_affine()) == ("A", "S", "L")
    reor = Reorientation.from_affine(sagittal_affine())
    data = np.random.default_rng(0).random((2, *SHAPE))
    ras = reor.to_ras(data)
    assert ras.shape == (2, 17, 20, 23)
    # RAS voxel [x, y, z] is input voxel [y, z, 16 - x]
    np.testing.assert_array_equal(ras[:, 3, 5, 7], data[:, 5, 7, 16 - 3])
    np.testing.assert_array_equal(reor.from_ras(ras), data)
    assert reor.spacing_to_ras((1.2, 0.9, 1.1)) == (1.1, 1.2, 0.9)


def test_lps_input_gives_the_mask_of_its_ras_version_mapped_back(tiny):
    lps_affine = np.diag([-1.0, -1.0, 1.3, 1.0])
    lps_affine[:3, 3] = [20.0, 25.0, -10.0]
    lps = nib.Nifti1Image(brain_image(seed=2), lps_affine)
    ras = nib.as_closest_canonical(lps)
    assert nib.aff2axcodes(lps.affine) == ("L", "P", "S") and nib.aff2axcodes(ras.affine) == ("R", "A", "S")
    predictor = Predictor(tiny, device="cpu", patch_size=16, spacing_mm=(1, 1, 1))
    p_lps = predictor.predict_image(lps)
    p_ras = predictor.predict_image(ras)
    back = Reorientation.from_affine(lps.affine)  # RAS -> LPS is a flip of x and y
    np.testing.assert_allclose(p_lps.probabilities, back.from_ras(p_ras.probabilities), atol=1e-6)
    np.testing.assert_array_equal(p_lps.mask, back.from_ras(p_ras.mask))
    assert 0 < p_lps.mask.sum() < p_lps.mask.size  # a non-trivial mask, so the comparison means something
    assert p_lps.info["reoriented"] and not p_ras.info["reoriented"]


@pytest.mark.parametrize("affine", [oblique_affine(), sagittal_affine()], ids=["oblique", "sagittal"])
def test_oblique_image_prediction_is_on_the_input_grid(affine):
    img = nib.Nifti1Image(brain_image(), affine)
    pred = Predictor(ThresholdNet(), device="cpu", patch_size=16, spacing_mm=None).predict_image(img)
    truth = np.zeros(SHAPE, bool)
    truth[LESION_BOX] = True
    np.testing.assert_array_equal(pred.mask.astype(bool), truth)


def test_bf16_runs_close_to_fp32(tiny):
    image = brain_image()
    fp32 = Predictor(tiny, device="cpu", patch_size=16, spacing_mm=None).predict_array(image)
    bf16 = Predictor(tiny, device="cpu", patch_size=16, spacing_mm=None, precision="bf16").predict_array(image)
    assert bf16.probabilities.dtype == np.float32
    assert np.abs(bf16.probabilities - fp32.probabilities).mean() < 0.02


def test_devices_and_options_are_checked(tiny):
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available.*--device cpu"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    with pytest.raises(ConfigError, match="multiple of the network divisor"):
        Predictor(tiny, device="cpu", patch_size=18)
    with pytest.raises(ConfigError, match="precision"):
        Predictor(tiny, device="cpu", precision="fp8")
    with pytest.raises(ConfigError, match="overlap"):
        Predictor(tiny, device="cpu", overlap=1.0)
    with pytest.raises(InputError, match="3D"):
        Predictor(tiny, device="cpu").predict_array(np.ones((4, 4)))


def test_from_record_reads_training_metadata(tiny):
    p = Predictor.from_record(tiny, {"patch_size": [8, 12, 16], "spacing_mm": [1.0, 1.0, 3.0]}, device="cpu")
    assert p.patch_size == (8, 12, 16) and p.spacing_mm == (1.0, 1.0, 3.0)
    d = Predictor.from_record(tiny, {}, device="cpu")
    assert d.patch_size == (64, 64, 64) and d.spacing_mm == (1.0, 1.0, 1.0)
    paper_like = mome.create_model("tiny")
    paper_like.config.expert.features_per_stage[0] = 32  # only the default-patch rule reads this
    assert Predictor.from_record(paper_like, {}, device="cpu").patch_size == (128, 128, 128)
