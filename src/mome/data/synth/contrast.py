"""Contrast model per modality, and scanner effects (bias field, blur, Rician noise, contrast jitter).

Tissue means are relative to an arbitrary scale (WM on T1 ~ 0.8). Each lesion compartment either sets an
absolute intensity (``("abs", v)``) or scales the underlying tissue (``("rel", f)``); subtle effects are
relative so that e.g. an acute infarct stays hard to see on T1 but bright on DWI, as in real MRI.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mome.data.synth.anatomy import Anatomy, smooth_field

TISSUE = {  # modality: (GM, WM, CSF)
    "T1": (0.55, 0.80, 0.15),
    "T1ce": (0.55, 0.80, 0.17),
    "T2": (0.60, 0.42, 1.00),
    "FLAIR": (0.55, 0.42, 0.08),
    "DWI": (0.50, 0.45, 0.10),
}

LESION = {
    "T1": {"oedema": ("rel", 0.86), "enhancing": ("abs", 0.56), "necrosis": ("abs", 0.28), "wmh": ("rel", 0.95),
           "ms": ("rel", 0.88), "ms_blackhole": ("abs", 0.32), "ms_enhancing": ("rel", 0.88),
           "infarct": ("rel", 0.95), "cavity": ("abs", 0.16), "gliosis": ("abs", 0.50)},
    "T1ce": {"oedema": ("rel", 0.86), "enhancing": ("abs", 1.30), "necrosis": ("abs", 0.28), "wmh": ("rel", 0.95),
             "ms": ("rel", 0.88), "ms_blackhole": ("abs", 0.32), "ms_enhancing": ("abs", 1.10),
             "infarct": ("rel", 0.96), "cavity": ("abs", 0.18), "gliosis": ("abs", 0.52)},
    "T2": {"oedema": ("abs", 0.85), "enhancing": ("abs", 0.72), "necrosis": ("abs", 0.95), "wmh": ("abs", 0.68),
           "ms": ("abs", 0.74), "ms_blackhole": ("abs", 0.85), "ms_enhancing": ("abs", 0.74),
           "infarct": ("rel", 1.12), "cavity": ("abs", 1.00), "gliosis": ("abs", 0.80)},
    "FLAIR": {"oedema": ("abs", 0.90), "enhancing": ("abs", 0.78), "necrosis": ("abs", 0.45), "wmh": ("abs", 0.80),
              "ms": ("abs", 0.80), "ms_blackhole": ("abs", 0.66), "ms_enhancing": ("abs", 0.80),
              "infarct": ("rel", 1.15), "cavity": ("abs", 0.10), "gliosis": ("abs", 0.78)},
    "DWI": {"oedema": ("rel", 1.04), "enhancing": ("abs", 0.58), "necrosis": ("abs", 0.22), "wmh": ("rel", 1.03),
            "ms": ("rel", 1.05), "ms_blackhole": ("rel", 0.92), "ms_enhancing": ("rel", 1.05),
            "infarct": ("abs", 1.10), "cavity": ("abs", 0.10), "gliosis": ("rel", 1.05)},
}


@dataclass(frozen=True)
class ScannerProfile:
    """Acquisition effects of one dataset (ranges sampled per image).

    Attributes:
        noise: Rician noise sigma as a fraction of WM intensity (min, max).
        bias: amplitude of the multiplicative smooth bias field (min, max).
        blur_mm: Gaussian blur sigma in mm (min, max) (through-plane resolution, reconstruction).
        gamma: intensity exponent range (contrast jitter across scanners).
        tissue_jitter: relative per-tissue intensity jitter (one sigma).
    """

    noise: tuple[float, float] = (0.02, 0.05)
    bias: tuple[float, float] = (0.02, 0.08)
    blur_mm: tuple[float, float] = (0.0, 0.8)
    gamma: tuple[float, float] = (0.9, 1.1)
    tissue_jitter: float = 0.04


def render(anat: Anatomy, lesions: dict[str, np.ndarray], modality: str, profile: ScannerProfile,
           rng: np.random.Generator) -> np.ndarray:
    """A skull-stripped image of ``modality`` (float32, arbitrary positive units, 0 outside the brain)."""
    jit = 1.0 + profile.tissue_jitter * rng.standard_normal(3)
    gm, wm, csf = (t * j for t, j in zip(TISSUE[modality], jit))
    img = anat.gm * gm + anat.wm * wm + anat.csf * csf
    # empty space inside the brain mask (partial volume at the edge) reads as CSF
    img = img + np.clip(anat.brain - (anat.gm + anat.wm + anat.csf), 0, 1) * csf
    # lesion intensity is heterogeneous (texture), not a flat value; one field per image keeps it cheap
    texture = 1.0 + 0.06 * smooth_field(rng, img.shape, control_points=8, order=1)
    for name, amount in lesions.items():
        kind, value = LESION[modality][name]
        v = value * (1.0 + profile.tissue_jitter * rng.standard_normal())
        target = img * v if kind == "rel" else np.full_like(img, v)
        img = img * (1 - amount) + amount * target * texture
    img = np.clip(img, 0, None)
    return _scanner(img, anat, profile, rng)


def _scanner(img: np.ndarray, anat: Anatomy, p: ScannerProfile, rng: np.random.Generator) -> np.ndarray:
    sigma_mm = rng.uniform(*p.blur_mm)
    if sigma_mm > 0:
        img = ndimage.gaussian_filter(img, sigma_mm / anat.spacing_mm)
    gamma = rng.uniform(*p.gamma)
    img = np.power(np.clip(img, 0, None) / 1.3, gamma) * 1.3
    bias = np.exp(rng.uniform(*p.bias) * smooth_field(rng, img.shape, control_points=3))
    img = img * bias
    sigma = rng.uniform(*p.noise) * 0.8
    real = img + sigma * rng.standard_normal(img.shape)
    imag = sigma * rng.standard_normal(img.shape)
    img = np.sqrt(real**2 + imag**2)  # Rician magnitude noise
    scale = rng.uniform(300, 3000)  # arbitrary scanner units
    return (img * scale * anat.brain).astype(np.float32)
