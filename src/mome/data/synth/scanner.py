"""Scanner effects of one acquisition: resolution blur, contrast (gamma), bias field, Rician noise, scale."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mome.data.synth.anatomy import smooth_field


@dataclass(frozen=True)
class ScannerProfile:
    """Acquisition effects of one dataset; each image draws its values uniformly from these ranges.

    Attributes:
        noise: Rician noise sigma as a fraction of WM intensity on T1 (min, max).
        bias: amplitude of the multiplicative smooth bias field, log scale (min, max).
        blur_mm: Gaussian blur sigma in mm (min, max) (through-plane resolution, reconstruction).
        gamma: intensity exponent (min, max) (contrast differences between scanners and sequences).
        tissue_jitter: relative per-tissue and per-lesion intensity jitter (one sigma).
    """

    noise: tuple[float, float] = (0.02, 0.05)
    bias: tuple[float, float] = (0.02, 0.08)
    blur_mm: tuple[float, float] = (0.0, 0.8)
    gamma: tuple[float, float] = (0.9, 1.1)
    tissue_jitter: float = 0.04


def apply_scanner(img: np.ndarray, brain: np.ndarray, spacing_mm: float, profile: ScannerProfile,
                  rng: np.random.Generator) -> np.ndarray:
    """Degrade a noise-free image like a scanner would.

    Args:
        img: noise-free intensities (arbitrary units, WM on T1 ~ 0.8).
        brain: boolean brain mask; the result is 0 outside (skull-stripped, as MoME's inputs).
        spacing_mm: voxel size (mm), to express the blur in mm.
        profile: the dataset's scanner profile.
        rng: the image's random generator.

    Returns:
        float32 image in arbitrary scanner units (a random global scale in [300, 3000]).
    """
    sigma_mm = rng.uniform(*profile.blur_mm)
    if sigma_mm > 0:
        img = ndimage.gaussian_filter(img, sigma_mm / spacing_mm)
    gamma = rng.uniform(*profile.gamma)
    img = np.power(np.clip(img, 0, None) / 1.3, gamma) * 1.3
    img = img * np.exp(rng.uniform(*profile.bias) * smooth_field(rng, img.shape, control_points=3))
    sigma = rng.uniform(*profile.noise) * 0.8
    real = img + sigma * rng.standard_normal(img.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(img.shape, dtype=np.float32)
    img = np.sqrt(real**2 + imag**2)  # magnitude of complex Gaussian noise = Rician
    scale = rng.uniform(300, 3000)
    return (img * scale * brain).astype(np.float32)
