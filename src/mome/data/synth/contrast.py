"""Contrast model: the noise-free intensity of every tissue and lesion compartment per modality.

Tissue means are on an arbitrary scale (WM on T1 = 0.8). Each lesion compartment either sets an absolute
intensity (``("abs", v)``) or scales the underlying tissue (``("rel", f)``). Subtle effects are relative,
so that e.g. an acute infarct stays hard to see on T1 but is bright on DWI, as in real MRI:

- tumour: oedema bright on T2/FLAIR, faint on T1; the enhancing rim only bright on T1ce; necrosis dark on
  T1/T1ce, bright on T2.
- WMH / MS: bright on FLAIR and T2, faint (WMH) or darker (MS, black holes) on T1; some MS lesions enhance.
- acute infarct: bright on DWI, slightly bright on T2/FLAIR, nearly invisible on T1.
- chronic infarct: CSF-like cavity (dark on T1 and FLAIR, bright on T2) with a gliotic rim.
"""

from __future__ import annotations

import numpy as np

from mome.data.synth.anatomy import Anatomy, smooth_field
from mome.data.synth.scanner import ScannerProfile, apply_scanner

TISSUE = {  # modality: (GM, WM, CSF)
    "T1": (0.55, 0.80, 0.15),
    "T1ce": (0.55, 0.80, 0.17),
    "T2": (0.60, 0.42, 1.00),
    "FLAIR": (0.55, 0.42, 0.08),
    "DWI": (0.50, 0.45, 0.10),
}

VESSEL_T1CE = 1.15
"""Intensity of enhancing veins and sinuses on T1ce (they are flow voids, i.e. CSF-like, elsewhere)."""

LESION = {
    "T1": {"oedema": ("rel", 0.88), "enhancing": ("rel", 0.82), "necrosis": ("abs", 0.40), "wmh": ("rel", 0.92),
           "ms": ("rel", 0.86), "ms_blackhole": ("abs", 0.32), "ms_enhancing": ("rel", 0.88),
           "infarct": ("rel", 0.95), "cavity": ("abs", 0.16), "gliosis": ("abs", 0.50)},
    "T1ce": {"oedema": ("rel", 0.88), "enhancing": ("abs", 1.30), "necrosis": ("abs", 0.35),
             "wmh": ("rel", 0.92), "ms": ("rel", 0.86), "ms_blackhole": ("abs", 0.32),
             "ms_enhancing": ("abs", 1.10), "infarct": ("rel", 0.96), "cavity": ("abs", 0.18),
             "gliosis": ("abs", 0.52)},
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
COMPARTMENTS = tuple(LESION["T1"])


def render(anat: Anatomy, lesions: dict[str, np.ndarray], modality: str, profile: ScannerProfile,
           rng: np.random.Generator) -> np.ndarray:
    """A skull-stripped image of one modality.

    Args:
        anat: the subject's tissue maps.
        lesions: soft compartment maps (0..1) named as in :data:`COMPARTMENTS`.
        modality: one of T1, T1ce, T2, FLAIR, DWI.
        profile: the dataset's scanner effects.
        rng: the image's random generator.

    Returns:
        float32 image in arbitrary positive units, 0 outside the brain (partial volume: intensities mix
        by tissue probability).
    """
    jit = 1.0 + profile.tissue_jitter * rng.standard_normal(3)
    gm, wm, csf = (t * j for t, j in zip(TISSUE[modality], jit))
    img = anat.gm * gm + anat.wm * wm + anat.csf * csf
    # empty space inside the brain mask (partial volume at the edge) reads as CSF
    img = img + np.clip(anat.brain - (anat.gm + anat.wm + anat.csf), 0, 1) * csf
    if modality == "T1ce":
        img = img * (1 - anat.vessels) + anat.vessels * VESSEL_T1CE
    # lesion intensity is heterogeneous (texture), not a flat value; one field per image keeps it cheap
    texture = 1.0 + 0.06 * smooth_field(rng, img.shape, control_points=8, order=1)
    for name, amount in lesions.items():
        kind, value = LESION[modality][name]
        v = value * (1.0 + profile.tissue_jitter * rng.standard_normal())
        target = img * v if kind == "rel" else np.float32(v)
        img = img * (1 - amount) + amount * target * texture
    return apply_scanner(np.clip(img, 0, None), anat.brain, anat.spacing_mm, profile, rng)
