"""Simulated clicks and interactive (SAM-Med3D) prediction from a reference mask."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from mome.errors import InputError
from mome.inference.clicks import CLICK_RULES, dice, error_regions, interactive_segmentation, next_click
from mome.inference.interactive import InteractivePredictor, crop_box, put_crop, take_crop
from mome.model.baselines import SAMMed3D, sam_med3d_config


def _ball(shape, centre, radius) -> torch.Tensor:
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    return torch.from_numpy(np.linalg.norm(grid - np.asarray(centre), axis=-1) < radius)


@pytest.mark.parametrize("rule", CLICK_RULES)
def test_every_click_lies_in_the_error_region_with_the_right_sign(rule):
    rng = np.random.default_rng(0)
    shape = (12, 14, 10)
    for trial in range(40):
        truth = _ball(shape, rng.uniform(2, 9, 3), rng.uniform(1.5, 4))
        prediction = _ball(shape, rng.uniform(2, 9, 3), rng.uniform(0, 4)) | torch.from_numpy(
            rng.random(shape) < 0.02)
        fn, fp = error_regions(prediction, truth)
        if not (fn.any() or fp.any()):
            continue
        point, label = next_click(prediction, truth, rule, rng)
        p = tuple(int(v) for v in point)
        assert bool(fn[p] or fp[p]), (trial, p)
        assert label == (1 if fn[p] else 0)
        if rule == "ritm":  # in the deeper half of the deeper error region
            region = fn if label == 1 else fp
            depth = ndimage.distance_transform_edt(np.pad(region.numpy(), 1))[1:-1, 1:-1, 1:-1]
            other = ndimage.distance_transform_edt(np.pad((fp if label == 1 else fn).numpy(), 1))[1:-1, 1:-1, 1:-1]
            assert depth[p] > depth.max() / 2 and depth.max() >= other.max()


def test_first_ritm_click_is_near_the_centre_of_the_lesion():
    truth = _ball((21, 21, 21), (10, 9, 11), 6)
    point, label = next_click(torch.zeros_like(truth), truth, "ritm", np.random.default_rng(0))
    assert label == 1 and np.linalg.norm(point.numpy() - np.array([10, 9, 11])) < 3.5


def test_perfect_prediction_gets_a_harmless_positive_click_and_empty_reference_is_refused():
    truth = _ball((9, 9, 9), (4, 4, 4), 3)
    point, label = next_click(truth.clone(), truth, "random", np.random.default_rng(0))
    assert label == 1 and tuple(point.tolist()) == (4, 4, 4)
    with pytest.raises(InputError, match="empty"):
        next_click(truth, torch.zeros_like(truth), "ritm", np.random.default_rng(0))


def test_crop_helpers_round_trip_at_the_border():
    volume = np.arange(7 * 8 * 9, dtype=np.float32).reshape(7, 8, 9)
    ref = np.zeros_like(volume, dtype=bool)
    ref[0:2, 6:8, 3:5] = True
    start, stop = crop_box(ref, 6)
    assert (stop - start == 6).all() and (start < 0).any()  # leaves the volume: zero padding
    block = take_crop(volume, start, 6)
    back = put_crop(block, start, volume.shape)
    inside = put_crop(np.ones((6,) * 3, bool), start, volume.shape)
    assert np.array_equal(back[inside], volume[inside]) and not back[~inside].any()


def _model(seed=0):
    torch.manual_seed(seed)
    return SAMMed3D(sam_med3d_config("tiny")).eval()


def test_interactive_predictor_keeps_the_geometry_and_is_deterministic():
    rng = np.random.default_rng(0)
    shape = (20, 23, 17)
    data = np.zeros(shape, np.float32)
    data[2:-2, 2:-2, 2:-2] = 100 + 5 * rng.standard_normal((16, 19, 13))
    ref = np.zeros(shape, np.uint8)
    ref[6:12, 8:15, 5:10] = 1
    data[ref > 0] += 50
    affine = np.diag([-1.5, 1.5, 1.5, 1.0])  # LAS at 1.5 mm: reoriented and resampled to the model's 1 mm
    img = nib.Nifti1Image(data, affine)
    record = {"spacing_mm": [1.0, 1.0, 1.0]}
    runs = [InteractivePredictor(_model(), record, n_clicks=4, seed=3, device="cpu").predict_image(img, ref)
            for _ in range(2)]
    a, b = runs
    assert a.probabilities.shape == (2, *shape) and a.mask.shape == shape
    assert np.array_equal(a.probabilities, b.probabilities) and a.info["click_points"] == b.info["click_points"]
    assert len(a.info["click_dice"]) == 4 and a.info["resampled"] and a.info["reoriented"]
    assert a.info["best_click_dice"] == max(a.info["click_dice"])
    with pytest.raises(InputError, match="empty"):
        InteractivePredictor(_model(), record, n_clicks=2, device="cpu").predict_image(img, np.zeros(shape))
    with pytest.raises(InputError, match="shape"):
        InteractivePredictor(_model(), record, n_clicks=2, device="cpu").predict_image(img, ref[:, :, :5])


def test_interactive_segmentation_reports_one_map_per_click():
    model = _model()
    truth = _ball((16, 16, 16), (8, 8, 8), 4)
    maps, session = interactive_segmentation(model, torch.randn(16, 16, 16), truth, 3, "ritm", seed=0)
    assert len(maps) == 3 and all(m.shape == (16, 16, 16) for m in maps)
    points, labels = session.tensors()
    assert points.shape == (1, 3, 3) and labels.shape == (1, 3) and int(labels[0, 0]) == 1
    assert dice(truth, truth) == 1.0 and dice(torch.zeros_like(truth), torch.zeros_like(truth)) == 1.0
