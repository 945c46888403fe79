"""Intensity normalisation shared by training and inference (they must match exactly)."""

from __future__ import annotations

import numpy as np


def brain_mask_from_image(image: np.ndarray) -> np.ndarray:
    """Voxels of a skull-stripped image that belong to the brain: every non-zero voxel."""
    return image != 0


def zscore_in_brain(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """z-score with mean and std over the brain (nnU-Net's MRI scheme); outside the brain is set to 0.

    Args:
        image: 3D intensities (any units).
        mask: boolean brain mask; default the non-zero voxels of ``image``.

    Returns:
        float32 array, mean 0 and std 1 inside the mask, 0 outside.
    """
    image = np.asarray(image, dtype=np.float32)
    mask = brain_mask_from_image(image) if mask is None else np.asarray(mask, dtype=bool)
    out = np.zeros_like(image)
    if not mask.any():
        return out
    vals = image[mask]
    mean = float(vals.mean())
    std = float(vals.std())
    out[mask] = (vals - mean) / max(std, 1e-8)
    return out
