"""Per-image segmentation metrics: Dice, HD95 (mm), absolute volume difference (ml), lesion-wise F1.

Empty-mask convention (BraTS challenge rules, generalised; recorded in every result as
:data:`EMPTY_MASK_CONVENTION`):

===================  ======  =====================================  ======  =======
case                 Dice    HD95                                   AVD     F1
===================  ======  =====================================  ======  =======
both masks empty     1       0 mm                                   0 ml    1
one mask empty       0       image diagonal in mm (the cap)         |V| ml  0
===================  ======  =====================================  ======  =======

The HD95 cap is the largest distance possible inside the image, the length of its diagonal
(sqrt(sum((shape_i * spacing_i)^2)) mm); for BraTS's 240 x 240 x 155 mm volumes that is the 373.13 mm the
BraTS evaluation uses. Capping keeps every mean finite and penalises a missed or hallucinated lesion with
the worst possible distance; rows that hit the cap are flagged (``empty`` field) and counted separately in
every evaluation, so a reader can also recompute means without them.

HD95 is the WMH 2017 challenge / MONAI / DeepMind surface-distance definition: the maximum of the two
directed 95th percentiles of surface-voxel distances (not MedPy's ``hd95``, which takes the 95th
percentile of both directions pooled). Surface voxels are mask voxels with a 6-connected background
neighbour; distances honour the voxel spacing (anisotropic voxels allowed).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from mome.errors import InputError, ShapeError

#: Connectivity of lesions for lesion-wise F1: 26-connected (faces, edges and corners), as the WMH 2017
#: challenge evaluation (SimpleITK ``SetFullyConnected(True)``).
LESION_CONNECTIVITY = 26

EMPTY_MASK_CONVENTION = {
    "both_empty": {"dice": 1.0, "hd95_mm": 0.0, "avd_ml": 0.0, "lesion_f1": 1.0},
    "one_empty": {"dice": 0.0, "hd95_mm": "image diagonal in mm (cap)", "avd_ml": "|V_pred - V_ref|",
                  "lesion_f1": 0.0},
    "hd95": "max of the two directed 95th percentiles of surface distances (mm), as MONAI and the WMH "
            "2017 challenge; capped at the image diagonal when exactly one mask is empty",
    "lesions": f"{LESION_CONNECTIVITY}-connected components; a reference lesion is detected when any "
               "predicted voxel overlaps it; a predicted lesion is a false positive when it overlaps no "
               "reference voxel; precision = predicted lesions overlapping the reference / predicted "
               "lesions, recall = detected reference lesions / reference lesions, F1 = 2PR/(P+R)",
    "binarisation": "voxels > 0 are lesion in both the reference and the prediction",
}


@dataclass
class LesionCounts:
    """Lesion-wise detection counts of one image (connected components, see module docstring).

    Attributes:
        n_ref: reference lesions.
        n_pred: predicted lesions.
        detected_ref: reference lesions overlapped by at least one predicted voxel.
        matched_pred: predicted lesions overlapping at least one reference voxel (the rest are false
            positives).
    """

    n_ref: int
    n_pred: int
    detected_ref: int
    matched_pred: int

    @property
    def precision(self) -> float:
        """Matched predicted lesions / predicted lesions (1 when nothing was predicted)."""
        return self.matched_pred / self.n_pred if self.n_pred else 1.0

    @property
    def recall(self) -> float:
        """Detected reference lesions / reference lesions (1 when the reference has none)."""
        return self.detected_ref / self.n_ref if self.n_ref else 1.0

    @property
    def f1(self) -> float:
        """2PR / (P + R); 1 when both masks are empty, 0 when exactly one is."""
        if self.n_ref == 0 and self.n_pred == 0:
            return 1.0
        if self.n_ref == 0 or self.n_pred == 0:
            return 0.0
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0


@dataclass
class ImageMetrics:
    """Every metric of one predicted mask against its reference.

    Attributes:
        dice: Dice similarity coefficient, 0..1.
        hd95_mm: 95th-percentile Hausdorff distance in mm (capped, see module docstring).
        avd_ml: absolute volume difference |V_pred - V_ref| in ml.
        lesion_f1: lesion-wise F1, 0..1.
        vol_ref_ml, vol_pred_ml: lesion volumes in ml.
        n_ref_lesions, n_pred_lesions, detected_ref_lesions, matched_pred_lesions: lesion counts.
        empty: ``"none"``, ``"both"``, ``"pred"`` (only the prediction is empty) or ``"ref"``.
    """

    dice: float
    hd95_mm: float
    avd_ml: float
    lesion_f1: float
    vol_ref_ml: float
    vol_pred_ml: float
    n_ref_lesions: int
    n_pred_lesions: int
    detected_ref_lesions: int
    matched_pred_lesions: int
    empty: str

    def to_dict(self) -> dict:
        return asdict(self)


def _as_masks(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ShapeError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}; "
                         "resample the prediction onto the reference grid first")
    if pred.ndim != 3:
        raise ShapeError(f"masks must be 3D, got shape {pred.shape}")
    return pred > 0, ref > 0


def _spacing(spacing: float | Sequence[float], ndim: int = 3) -> tuple[float, ...]:
    sp = (float(spacing),) * ndim if np.isscalar(spacing) else tuple(float(s) for s in spacing)
    if len(sp) != ndim or not all(np.isfinite(s) and s > 0 for s in sp):
        raise InputError(f"voxel spacing {spacing!r} must be {ndim} positive finite numbers (mm)")
    return sp


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice = 2|P ∩ R| / (|P| + |R|) of two masks (voxels > 0); 1 when both are empty."""
    # Hand-written: one line of numpy on booleans, with the empty rule stated here rather than via
    # MONAI's DiceMetric flags (``ignore_empty``), and no torch round trip.
    p, r = _as_masks(pred, ref)
    denom = int(p.sum()) + int(r.sum())
    return 1.0 if denom == 0 else 2.0 * int(np.logical_and(p, r).sum()) / denom


def image_diagonal_mm(shape: Sequence[int], spacing: float | Sequence[float]) -> float:
    """Length of the image's diagonal in mm: the HD95 cap used when exactly one mask is empty."""
    sp = _spacing(spacing, len(shape))
    return float(np.sqrt(sum((n * s) ** 2 for n, s in zip(shape, sp))))


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: float | Sequence[float] = 1.0,
         percentile: float = 95.0) -> float:
    """Percentile Hausdorff distance in mm between two masks (MONAI's surface distances).

    Args:
        pred, ref: 3D masks of equal shape (voxels > 0 are lesion).
        spacing: voxel size in mm, one number or one per axis (array axis order).
        percentile: 95 for HD95, 100 for the plain Hausdorff distance.

    Returns:
        max(P95 of pred->ref distances, P95 of ref->pred distances) in mm; 0 when both masks are
        empty; the image diagonal (mm) when exactly one is.
    """
    import torch
    from monai.metrics import compute_hausdorff_distance

    p, r = _as_masks(pred, ref)
    sp = _spacing(spacing, p.ndim)
    p_any, r_any = bool(p.any()), bool(r.any())
    if not p_any and not r_any:
        return 0.0
    if p_any != r_any:
        return image_diagonal_mm(p.shape, sp)
    with warnings.catch_warnings():  # MONAI warns about its own deprecated internal argument
        warnings.simplefilter("ignore", FutureWarning)
        out = compute_hausdorff_distance(torch.from_numpy(p)[None, None], torch.from_numpy(r)[None, None],
                                         include_background=True, percentile=percentile, spacing=list(sp))
    return float(out.item())


def lesion_counts(pred: np.ndarray, ref: np.ndarray) -> LesionCounts:
    """Connected-component detection counts (26-connectivity; match rule in the module docstring)."""
    from scipy import ndimage

    p, r = _as_masks(pred, ref)
    structure = ndimage.generate_binary_structure(3, 3)  # 26-connectivity
    ref_lab, n_ref = ndimage.label(r, structure=structure)
    pred_lab, n_pred = ndimage.label(p, structure=structure)
    detected = np.unique(ref_lab[p & r])
    matched = np.unique(pred_lab[p & r])
    return LesionCounts(int(n_ref), int(n_pred), int((detected > 0).sum()), int((matched > 0).sum()))


def lesion_f1(pred: np.ndarray, ref: np.ndarray) -> float:
    """Lesion-wise F1 (see :class:`LesionCounts`): 1 when both masks are empty, 0 when exactly one is."""
    return lesion_counts(pred, ref).f1


def volume_ml(mask: np.ndarray, spacing: float | Sequence[float] = 1.0) -> float:
    """Volume of the voxels > 0 in ml (1 ml = 1000 mm^3)."""
    sp = _spacing(spacing, np.ndim(mask))
    return float(np.count_nonzero(np.asarray(mask) > 0) * np.prod(sp) / 1000.0)


def compute_metrics(pred: np.ndarray, ref: np.ndarray, spacing: float | Sequence[float] = 1.0) -> ImageMetrics:
    """All metrics of one image.

    Args:
        pred: predicted mask (voxels > 0 are lesion).
        ref: reference mask of the same shape.
        spacing: voxel size in mm per array axis.

    Returns:
        :class:`ImageMetrics` following the module's empty-mask convention.
    """
    p, r = _as_masks(pred, ref)
    sp = _spacing(spacing, p.ndim)
    counts = lesion_counts(p, r)
    v_ref, v_pred = volume_ml(r, sp), volume_ml(p, sp)
    p_any, r_any = bool(p.any()), bool(r.any())
    empty = "both" if not (p_any or r_any) else "pred" if not p_any else "ref" if not r_any else "none"
    return ImageMetrics(
        dice=dice(p, r), hd95_mm=hd95(p, r, sp), avd_ml=abs(v_pred - v_ref), lesion_f1=counts.f1,
        vol_ref_ml=v_ref, vol_pred_ml=v_pred, n_ref_lesions=counts.n_ref, n_pred_lesions=counts.n_pred,
        detected_ref_lesions=counts.detected_ref, matched_pred_lesions=counts.matched_pred, empty=empty,
    )
