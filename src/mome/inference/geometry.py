"""Voxel-grid bookkeeping for inference: reorientation to RAS, resampling to the model spacing, padding.

Every step here has an exact inverse, so the prediction comes back on the input's own voxel grid
(identical shape and affine) whatever the scan's orientation, spacing or size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from nibabel import orientations

_RAS = orientations.axcodes2ornt(("R", "A", "S"))


@dataclass(frozen=True)
class Reorientation:
    """Axis permutation and flips from an image's voxel order to the closest RAS voxel order.

    Only axes are permuted and flipped (no interpolation), so :meth:`from_ras` undoes :meth:`to_ras`
    exactly. The network was trained on MNI-space (RAS) images, so it sees scans in that voxel order.
    """

    ornt: np.ndarray  # nibabel orientation: row i = (RAS axis of input axis i, +1 or -1)

    @classmethod
    def from_affine(cls, affine: np.ndarray) -> "Reorientation":
        return cls(orientations.io_orientation(np.asarray(affine, dtype=np.float64)))

    @property
    def is_identity(self) -> bool:
        return bool(np.array_equal(self.ornt, _RAS))

    def to_ras(self, array: np.ndarray) -> np.ndarray:
        """Reorder the last three axes of ``array`` (leading axes, e.g. channels, are kept)."""
        return self._apply(array, self.ornt)

    def from_ras(self, array: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_ras`."""
        return self._apply(array, orientations.ornt_transform(_RAS, self.ornt))

    def spacing_to_ras(self, spacing: tuple[float, float, float]) -> tuple[float, float, float]:
        """Voxel spacing (mm) per axis of the reoriented array."""
        out = [0.0, 0.0, 0.0]
        for axis, (target, _flip) in enumerate(self.ornt):
            out[int(target)] = float(spacing[axis])
        return tuple(out)

    @staticmethod
    def _apply(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
        lead = array.ndim - 3
        if lead == 0:
            return np.ascontiguousarray(orientations.apply_orientation(array, ornt))
        # apply_orientation works on the first axes: move the spatial axes to the front and back
        moved = np.moveaxis(array, list(range(lead)), list(range(3, 3 + lead)))
        out = orientations.apply_orientation(moved, ornt)
        return np.ascontiguousarray(np.moveaxis(out, list(range(3, 3 + lead)), list(range(lead))))


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis (column norms of the affine's 3x3 part)."""
    return tuple(float(v) for v in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))


def needs_resampling(spacing: tuple[float, ...], target: tuple[float, ...] | None, tolerance: float = 0.1) -> bool:
    """True when any axis of ``spacing`` differs from ``target`` by more than ``tolerance`` (relative)."""
    if target is None:
        return False
    return any(abs(s - t) > tolerance * t for s, t in zip(spacing, target))


def resampled_shape(shape: tuple[int, ...], spacing: tuple[float, ...], target: tuple[float, ...]) -> tuple[int, ...]:
    """Grid size that covers the same field of view at spacing ``target`` (at least 1 voxel per axis)."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))


def resample(array: np.ndarray | torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Trilinear resampling of the last three axes of a (C, X, Y, Z) or (X, Y, Z) array to ``shape``.

    torch's ``interpolate`` (align_corners=False: voxel centres of both grids span the same field of
    view) is used rather than scipy because it returns exactly ``shape`` and runs on the GPU too.
    """
    t = torch.as_tensor(array)
    squeeze = t.ndim == 3
    t = t[None, None] if squeeze else t[None]
    out = F.interpolate(t.float(), size=tuple(int(s) for s in shape), mode="trilinear", align_corners=False)
    return out[0, 0] if squeeze else out[0]


def pad_to_multiple(array: torch.Tensor, divisor: tuple[int, int, int],
                    minimum: tuple[int, int, int] | None = None) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Zero-pad the last three axes (centred, as nnU-Net) to multiples of ``divisor`` and at least ``minimum``.

    Returns:
        ``(padded, crop)`` where ``padded[..., crop[0], crop[1], crop[2]]`` is the input again.
    """
    shape = array.shape[-3:]
    minimum = minimum or (1, 1, 1)
    target = [max(int(np.ceil(max(n, m) / d)) * d, d) for n, m, d in zip(shape, minimum, divisor)]
    before = [(t - n) // 2 for t, n in zip(target, shape)]
    after = [t - n - b for t, n, b in zip(target, shape, before)]
    # F.pad lists the last axis first
    pad = [p for axis in (2, 1, 0) for p in (before[axis], after[axis])]
    padded = F.pad(array, pad) if any(pad) else array
    crop = tuple(slice(b, b + n) for b, n in zip(before, shape))
    return padded, crop
