"""Per-subject anatomy: MNI152 tissue maps warped by a random smooth deformation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mome.data.mni import mni_maps


@dataclass
class Anatomy:
    """Tissue probability maps of one synthetic subject on the preset grid (float32, sum <= 1).

    Attributes:
        gm, wm, csf: tissue probabilities.
        brain: boolean brain mask.
        ventricles: boolean mask of the lateral ventricles (deep CSF), used to place lesions.
        spacing_mm: voxel size.
    """

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray
    ventricles: np.ndarray
    spacing_mm: float


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], control_points: int = 5,
                 order: int = 3) -> np.ndarray:
    """A smooth random field in [-1, 1]: Gaussian noise on a coarse grid, spline-upsampled (``order``)."""
    coarse = rng.standard_normal(tuple(max(2, control_points) for _ in shape))
    zoom = [s / c for s, c in zip(shape, coarse.shape)]
    field = ndimage.zoom(coarse, zoom, order=order, mode="nearest")[tuple(slice(0, s) for s in shape)]
    return (field / max(np.abs(field).max(), 1e-6)).astype(np.float32)


def make_anatomy(rng: np.random.Generator, spacing_mm: float, *, max_displacement_mm: float = 4.0,
                 atrophy: float = 0.0) -> Anatomy:
    """Warp the MNI152 tissue maps with a random smooth deformation and a global scaling.

    Args:
        rng: the subject's random generator.
        spacing_mm: grid spacing of the preset.
        max_displacement_mm: amplitude of the smooth local displacement.
        atrophy: 0..1; enlarges the ventricles and sulcal CSF (older subjects, e.g. OASIS/WMH-like).
    """
    maps = mni_maps(spacing_mm)
    shape = maps["mask"].shape
    grid = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    centre = [(n - 1) / 2 for n in shape]
    scale = 1.0 + rng.uniform(-0.06, 0.06, size=3)
    amp = max_displacement_mm / spacing_mm
    coords = [(g - c) / s + c + amp * smooth_field(rng, shape) for g, c, s in zip(grid, centre, scale)]

    def warp(a: np.ndarray) -> np.ndarray:
        return ndimage.map_coordinates(a, coords, order=1, mode="constant", cval=0.0).astype(np.float32)

    gm, wm, csf, mask = warp(maps["gm"]), warp(maps["wm"]), warp(maps["csf"]), warp(maps["mask"])
    brain = mask > 0.5
    ventricles = _ventricles(csf, brain, spacing_mm, maps_affine(spacing_mm))
    if atrophy > 0:
        grow = ndimage.binary_dilation(ventricles, iterations=max(1, int(round(atrophy * 4 / spacing_mm))))
        ventricles = grow & brain
        shrink = 1.0 - atrophy * 0.25
        gm_lost = gm * (1 - shrink)
        gm, csf = gm * shrink, csf + gm_lost
    csf = np.where(ventricles, np.maximum(csf, 0.95), csf)
    tot = gm + wm + csf
    norm = np.where(tot > 1, 1 / np.maximum(tot, 1e-6), 1.0)
    gm, wm, csf = gm * norm * brain, wm * norm * brain, csf * norm * brain
    return Anatomy(gm.astype(np.float32), wm.astype(np.float32), csf.astype(np.float32), brain, ventricles,
                   float(spacing_mm))


def maps_affine(spacing_mm: float) -> np.ndarray:
    from mome.data.mni import mni_grid

    return mni_grid(spacing_mm)[1]


# world box (MNI mm) holding the lateral ventricles
_VENTRICLE_BOX = ((-30.0, 30.0), (-45.0, 32.0), (-2.0, 35.0))


def _ventricles(csf: np.ndarray, brain: np.ndarray, spacing_mm: float, affine: np.ndarray) -> np.ndarray:
    """Lateral ventricles: CSF-dominant voxels inside a central MNI box and away from the surface."""
    depth_mm = ndimage.distance_transform_edt(brain) * spacing_mm
    idx = np.indices(csf.shape, dtype=np.float32)
    inside = np.ones(csf.shape, bool)
    for axis, (lo, hi) in enumerate(_VENTRICLE_BOX):
        world = affine[axis, axis] * idx[axis] + affine[axis, 3]
        inside &= (world >= lo) & (world <= hi)
    vent = (csf > 0.5) & (depth_mm > 12) & inside
    if vent.sum() < 4:  # coarse grids: take the deepest CSF-rich voxels
        score = csf * depth_mm
        vent = score >= np.quantile(score[brain], 0.995)
    return vent & brain
