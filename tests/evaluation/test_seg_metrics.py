"""Per-image metrics against MedPy (an independent implementation) and hand-computed values."""

from __future__ import annotations

import medpy.metric.binary as medpy_binary
import numpy as np
import pytest
from scipy import ndimage

from mome.errors import InputError, ShapeError
from mome.evaluation.metrics import (
    compute_metrics,
    dice,
    hd95,
    image_diagonal_mm,
    lesion_counts,
    lesion_f1,
    volume_ml,
)

SHAPE = (20, 24, 16)
ANISO = (0.8, 1.5, 3.0)
# MedPy's directed surface distances (module-private, but the very thing MedPy's hd/hd95/asd build on)
_medpy_surface_distances = getattr(medpy_binary, "__surface_distances")


def _medpy_hd95(pred, ref, spacing):
    """HD95 as max of the directed 95th percentiles, from MedPy's surface distances."""
    d1 = _medpy_surface_distances(pred, ref, spacing, 1)
    d2 = _medpy_surface_distances(ref, pred, spacing, 1)
    return max(np.percentile(d1, 95), np.percentile(d2, 95))


def _blobs(rng, p=0.004, grow=2):
    return ndimage.binary_dilation(rng.random(SHAPE) < p, iterations=grow)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), ANISO])
def test_random_masks_match_medpy(seed, spacing):
    rng = np.random.default_rng(seed)
    pred, ref = _blobs(rng), _blobs(rng)
    assert pred.any() and ref.any()
    assert dice(pred, ref) == pytest.approx(medpy_binary.dc(pred, ref), abs=1e-12)
    assert hd95(pred, ref, spacing) == pytest.approx(_medpy_hd95(pred, ref, spacing), rel=1e-5)
    # plain Hausdorff distance: MedPy's own public hd
    assert hd95(pred, ref, spacing, percentile=100) == pytest.approx(medpy_binary.hd(pred, ref, spacing), rel=1e-5)


def test_anisotropic_spacing_changes_distance_along_the_thick_axis():
    ref = np.zeros(SHAPE, bool)
    pred = np.zeros(SHAPE, bool)
    ref[5, 5, 4] = pred[5, 5, 7] = True  # one voxel each, 3 voxels apart along axis 2
    assert hd95(pred, ref, (1.0, 1.0, 1.0)) == pytest.approx(3.0)
    assert hd95(pred, ref, ANISO) == pytest.approx(9.0)  # 3 voxels x 3 mm
    assert hd95(pred, ref, ANISO) == pytest.approx(medpy_binary.hd95(pred, ref, ANISO))
    assert hd95(ref, ref, ANISO) == 0.0 and dice(ref, ref) == 1.0


def test_both_empty():
    z = np.zeros(SHAPE, np.uint8)
    m = compute_metrics(z, z, ANISO)
    assert (m.dice, m.hd95_mm, m.avd_ml, m.lesion_f1, m.empty) == (1.0, 0.0, 0.0, 1.0, "both")


@pytest.mark.parametrize("which", ["pred", "ref"])
def test_exactly_one_empty_is_capped_at_the_image_diagonal(which):
    mask = np.zeros(SHAPE, np.uint8)
    mask[3:6, 4:8, 2:4] = 1  # 24 voxels
    empty = np.zeros(SHAPE, np.uint8)
    pred, ref = (empty, mask) if which == "pred" else (mask, empty)
    m = compute_metrics(pred, ref, ANISO)
    diag = np.sqrt((20 * 0.8) ** 2 + (24 * 1.5) ** 2 + (16 * 3.0) ** 2)  # 62.10 mm
    assert m.hd95_mm == pytest.approx(diag) == image_diagonal_mm(SHAPE, ANISO)
    assert m.dice == 0.0 and m.lesion_f1 == 0.0 and m.empty == which
    assert m.avd_ml == pytest.approx(24 * 0.8 * 1.5 * 3.0 / 1000)
    assert medpy_binary.dc(pred, ref) == 0.0  # MedPy agrees on Dice 0 here
    assert image_diagonal_mm((240, 240, 155), 1.0) == pytest.approx(373.13, abs=0.01)  # BraTS's cap


def test_one_voxel_masks():
    a = np.zeros(SHAPE, bool)
    a[10, 10, 8] = True
    b = np.zeros(SHAPE, bool)
    b[11, 10, 8] = True
    m = compute_metrics(a, a, ANISO)
    assert (m.dice, m.hd95_mm, m.lesion_f1, m.n_ref_lesions) == (1.0, 0.0, 1.0, 1)
    m = compute_metrics(b, a, ANISO)
    assert m.dice == 0.0 and m.lesion_f1 == 0.0
    assert m.hd95_mm == pytest.approx(0.8) == pytest.approx(_medpy_hd95(b, a, ANISO))
    assert m.avd_ml == 0.0 and m.vol_ref_ml == pytest.approx(0.8 * 1.5 * 3.0 / 1000)


def test_volume_ml():
    mask = np.zeros((10, 10, 10))
    mask[:] = 1
    assert volume_ml(mask) == pytest.approx(1.0)  # 1000 voxels of 1 mm^3
    assert volume_ml(mask, (0.5, 0.5, 2.0)) == pytest.approx(0.5)
    assert volume_ml(mask * 3) == pytest.approx(1.0)  # any value > 0 is lesion


def test_lesion_f1_hand_built():
    ref = np.zeros(SHAPE, np.uint8)
    ref[2:4, 2:4, 2:4] = 1                  # lesion A
    ref[10:12, 10:12, 2:4] = 1              # lesion B
    ref[15, 5, 10] = ref[16, 6, 11] = 1     # lesion C: two voxels touching at a corner only
    pred = np.zeros(SHAPE, np.uint8)
    pred[3:5, 3:5, 3:5] = 1                 # overlaps A
    pred[16, 6, 11] = 1                     # overlaps C (one voxel of it)
    pred[18:20, 20:22, 12:14] = 1           # false positive
    c = lesion_counts(pred, ref)
    assert (c.n_ref, c.detected_ref, c.n_pred, c.matched_pred) == (3, 2, 3, 2)  # C is one 26-connected lesion
    assert c.precision == pytest.approx(2 / 3) and c.recall == pytest.approx(2 / 3)
    assert lesion_f1(pred, ref) == pytest.approx(2 / 3)
    # one predicted blob covering A and B: precision 1/1, recall 2/3 -> F1 0.8
    merged = np.zeros(SHAPE, np.uint8)
    merged[2:12, 2:12, 2:4] = 1
    assert lesion_f1(merged, ref) == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))
    assert lesion_f1(np.zeros(SHAPE), np.zeros(SHAPE)) == 1.0


def test_bad_inputs():
    with pytest.raises(ShapeError, match="differs"):
        dice(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))
    with pytest.raises(ShapeError, match="3D"):
        hd95(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(InputError, match="spacing"):
        compute_metrics(np.ones((4, 4, 4)), np.ones((4, 4, 4)), (1.0, 0.0, 1.0))
