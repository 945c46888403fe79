"""Lesion models. Each returns soft compartment maps (float32 in [0, 1]) on the subject's grid.

Compartment names are read by :mod:`mome.data.synth.contrast`: tumour ``oedema``, ``enhancing``,
``necrosis``; WMH ``wmh``; MS ``ms``, ``ms_blackhole``, ``ms_enhancing``; acute stroke ``infarct``;
chronic stroke ``cavity``, ``gliosis``. Sizes are in mm, so every model works at every preset spacing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from mome.data.synth.anatomy import Anatomy, smooth_field
from mome.data.synth.shapes import LesionShapes
from mome.errors import DataError

Compartments = dict[str, np.ndarray]

# arterial territory centres (MNI mm, right hemisphere; x is mirrored for the left) and spreads (mm)
_TERRITORIES = {
    "MCA": ((42.0, -10.0, 18.0), (10.0, 22.0, 18.0)),
    "ACA": ((9.0, 25.0, 40.0), (4.0, 20.0, 15.0)),
    "PCA": ((22.0, -75.0, 5.0), (8.0, 12.0, 10.0)),
    "deep": ((22.0, -5.0, 8.0), (6.0, 10.0, 8.0)),
}


def blob(shape: tuple[int, ...], centre_vox, radii_vox, rng: np.random.Generator,
         irregularity: float = 0.3) -> np.ndarray:
    """A soft, irregular ellipsoid with a random orientation; values in [0, 1].

    Args:
        shape: grid shape (voxels).
        centre_vox: centre (voxel coordinates).
        radii_vox: semi-axes (voxels).
        rng: random generator (orientation and boundary wobble).
        irregularity: amplitude of the smooth boundary wobble, relative to the radius.
    """
    radii = np.maximum(np.asarray(radii_vox, dtype=float), 0.6)
    reach = int(np.ceil(radii.max() * (1.6 + irregularity))) + 2
    lo = np.maximum(np.floor(centre_vox).astype(int) - reach, 0)
    hi = np.minimum(np.floor(centre_vox).astype(int) + reach + 1, shape)
    out = np.zeros(shape, np.float32)
    if np.any(hi <= lo):
        return out
    sub = [np.arange(a, b, dtype=np.float32) for a, b in zip(lo, hi)]
    g = np.stack(np.meshgrid(*sub, indexing="ij"), -1) - np.asarray(centre_vox, np.float32)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    d = np.sqrt((((g @ q) / radii) ** 2).sum(-1))
    box_shape = tuple(hi - lo)
    wobble = irregularity * smooth_field(rng, box_shape, control_points=4) if min(box_shape) > 1 else 0.0
    # soft edge about one voxel wide (partial volume)
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = np.clip(1.0 - (d - wobble - 1.0) * max(radii.min(), 1.0),
                                                              0.0, 1.0)
    return out


def _pick(rng: np.random.Generator, mask: np.ndarray, what: str) -> np.ndarray:
    idx = np.argwhere(mask)
    if len(idx) == 0:
        raise DataError(f"synthetic {what} placement found no candidate voxel on this grid; use a finer preset")
    return idx[rng.integers(len(idx))].astype(float)


def glioma(anat: Anatomy, rng: np.random.Generator, shapes: LesionShapes | None = None) -> Compartments:
    """Whole tumour = oedema around a core of enhancing rim + necrosis (radii 18-32 mm, deep WM centre)."""
    s = anat.spacing_mm
    shape = anat.brain.shape
    centre = _pick(rng, (anat.wm > 0.4) & (anat.depth_mm > 25), "tumour")
    r_whole = rng.uniform(18, 32) * rng.uniform(0.8, 1.2, 3) / s
    whole = blob(shape, centre, r_whole, rng, 0.45) * anat.brain
    core_scale = rng.uniform(0.4, 0.65)
    core = blob(shape, centre, r_whole * core_scale, rng, 0.3) * anat.brain
    necrosis = blob(shape, centre, r_whole * core_scale * rng.uniform(0.3, 0.6), rng, 0.3) * core
    return {"oedema": np.clip(whole - core, 0, 1), "enhancing": np.clip(core - necrosis, 0, 1),
            "necrosis": necrosis}


def wmh(anat: Anatomy, rng: np.random.Generator, shapes: LesionShapes | None = None,
        severity: float | None = None) -> Compartments:
    """Periventricular caps at the ventricles' frontal and occipital horns + punctate deep lesions.

    Args:
        severity: 0..1 scales cap size and the number of deep lesions (default uniform 0.4..1).
    """
    s = anat.spacing_mm
    severity = rng.uniform(0.4, 1.0) if severity is None else severity
    shape = anat.brain.shape
    out = np.zeros(shape, np.float32)
    vent = np.argwhere(anat.ventricles)
    if len(vent):
        for side in (-1, 1):
            half = vent[(vent[:, 0] - shape[0] / 2) * side > 0]
            if not len(half):
                continue
            for front in (True, False):
                tip = half[np.argmax(half[:, 1])] if front else half[np.argmin(half[:, 1])]
                tip = tip + np.array([side * 2.0, 3.0 if front else -3.0, 1.0]) / s
                out = np.maximum(out, blob(shape, tip, severity * rng.uniform(5, 10, 3) / s, rng, 0.5))
    deep_wm = (anat.wm > 0.5) & (anat.depth_mm > 10)
    for _ in range(int(rng.integers(2, 4 + int(10 * severity)))):
        c = _pick(rng, deep_wm, "WMH")
        out = np.maximum(out, blob(shape, c, rng.uniform(1.5, 3.5, 3) / s, rng, 0.3))
    return {"wmh": out * ((anat.wm + 0.5 * anat.gm) > 0.3)}


def ms(anat: Anatomy, rng: np.random.Generator, shapes: LesionShapes | None = None) -> Compartments:
    """Ovoid periventricular and juxtacortical lesions; ~20% T1 black holes, ~15% enhancing.

    With ``shapes`` (real MS lesion masks), half of the subjects also get one real lesion pattern.
    """
    s = anat.spacing_mm
    shape = anat.brain.shape
    comps = {k: np.zeros(shape, np.float32) for k in ("ms", "ms_blackhole", "ms_enhancing")}
    white = anat.wm > 0.4
    near_vent = ndimage.binary_dilation(anat.ventricles, iterations=max(1, int(round(4 / s)))) & white
    juxta = white & ndimage.binary_dilation(anat.gm > 0.6, iterations=1)
    for i in range(int(rng.integers(4, 13))):
        where = near_vent if (i % 2 == 0 and near_vent.any()) else juxta
        c = _pick(rng, where, "MS lesion")
        r = rng.uniform(2.0, 4.5, 3) / s
        r[rng.integers(3)] *= rng.uniform(1.3, 2.0)  # ovoid (Dawson's fingers are elongated)
        kind = str(rng.choice(["ms", "ms_blackhole", "ms_enhancing"], p=[0.65, 0.2, 0.15]))
        comps[kind] = np.maximum(comps[kind], blob(shape, c, r, rng, 0.25))
    if shapes is not None and rng.random() < 0.5:
        comps["ms"] = np.maximum(comps["ms"], shapes.sample(rng, anat) * (anat.wm + anat.gm > 0.3))
    return {k: v * anat.brain for k, v in comps.items()}


def _territory_blob(anat: Anatomy, rng: np.random.Generator, big: bool) -> np.ndarray:
    name = str(rng.choice(list(_TERRITORIES)))
    (cx, cy, cz), spread = _TERRITORIES[name]
    side = rng.choice([-1.0, 1.0])
    centre_mm = np.array([side * cx, cy, cz]) + rng.normal(0, 1, 3) * np.array(spread) * 0.4
    c = np.linalg.solve(anat.affine[:3, :3], centre_mm - anat.affine[:3, 3])
    c = np.clip(c, 0, np.array(anat.brain.shape) - 1)
    r = (rng.uniform(10, 28, 3) if big else rng.uniform(4, 12, 3)) / anat.spacing_mm
    return blob(anat.brain.shape, c, r, rng, 0.6) * ((anat.gm + anat.wm) > 0.35)


def acute_stroke(anat: Anatomy, rng: np.random.Generator, shapes: LesionShapes | None = None) -> Compartments:
    """An infarct in an arterial territory (bright on DWI, subtle elsewhere), or a real stroke shape."""
    lesion = shapes.sample(rng, anat) if shapes is not None else _territory_blob(anat, rng, rng.random() < 0.6)
    return {"infarct": lesion * ((anat.gm + anat.wm) > 0.2)}


def chronic_stroke(anat: Anatomy, rng: np.random.Generator, shapes: LesionShapes | None = None) -> Compartments:
    """A CSF-like cavity with a gliotic rim in an arterial territory (dark on T1), or a real stroke shape."""
    lesion = shapes.sample(rng, anat) if shapes is not None else _territory_blob(anat, rng, True)
    hard = lesion > 0.5
    core = ndimage.binary_erosion(hard, iterations=1) if hard.sum() > 27 else hard
    cavity = np.where(core, lesion, 0).astype(np.float32)
    return {"cavity": cavity, "gliosis": np.clip(lesion - cavity, 0, 1)}


def wmh_small(anat: Anatomy, rng: np.random.Generator, shapes: LesionShapes | None = None) -> Compartments:
    """OASIS-like: mild WMH (severity 0.25..0.55)."""
    return wmh(anat, rng, severity=rng.uniform(0.25, 0.55))


def wmh_mix(anat: Anatomy, rng: np.random.Generator, shapes: LesionShapes | None = None) -> Compartments:
    """WMH of several diseases: small-vessel caps, plus MS-like ovoids (50%) and a small infarct (30%)."""
    comps = wmh(anat, rng, severity=rng.uniform(0.3, 0.9))
    if rng.random() < 0.5:
        comps.update(ms(anat, rng, shapes))
    if rng.random() < 0.3:
        comps["infarct"] = _territory_blob(anat, rng, big=False)
    return comps


LESION_MODELS: dict[str, Callable[..., Compartments]] = {
    "glioma": glioma, "wmh": wmh, "wmh_small": wmh_small, "ms": ms, "acute_stroke": acute_stroke,
    "chronic_stroke": chronic_stroke, "wmh_mix": wmh_mix,
}
"""Lesion model name -> ``model(anat, rng, shapes)``."""

SHAPE_KIND = {"ms": "ms", "wmh_mix": "ms", "acute_stroke": "stroke", "chronic_stroke": "stroke"}
"""Which kind of real lesion masks (``--lesion-masks KIND=DIR``) each model can draw shapes from."""
