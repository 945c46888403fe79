"""Lesion models. Each returns soft compartment maps (float32 in [0, 1]) on the subject's grid.

Compartment names are read by :mod:`mome.data.synth.contrast`:
tumour: ``oedema``, ``enhancing``, ``necrosis``; WMH: ``wmh``; MS: ``ms``, ``ms_blackhole``,
``ms_enhancing``; acute stroke: ``infarct``; chronic stroke: ``cavity``, ``gliosis``.
Sizes are in mm, so the same model works at every preset spacing.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from scipy import ndimage

from mome.data.synth.anatomy import Anatomy, smooth_field
from mome.errors import DataError

# arterial territory centres (MNI mm, right hemisphere; x is mirrored for the left) and spreads
_TERRITORIES = {
    "MCA": ((42.0, -10.0, 18.0), (10.0, 22.0, 18.0)),
    "ACA": ((9.0, 25.0, 40.0), (4.0, 20.0, 15.0)),
    "PCA": ((22.0, -75.0, 5.0), (8.0, 12.0, 10.0)),
    "deep": ((22.0, -5.0, 8.0), (6.0, 10.0, 8.0)),
}


def _world_to_voxel(anat: Anatomy, affine: np.ndarray, xyz_mm) -> np.ndarray:
    return np.linalg.solve(affine[:3, :3], np.asarray(xyz_mm, dtype=float) - affine[:3, 3])


def blob(shape, centre_vox, radii_vox, rng: np.random.Generator, irregularity: float = 0.3) -> np.ndarray:
    """A soft, irregular ellipsoid (random orientation) centred at ``centre_vox``; values in [0, 1]."""
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
    r = d - wobble
    # soft edge about one voxel wide (partial volume)
    soft = np.clip(1.0 - (r - 1.0) * max(radii.min(), 1.0), 0.0, 1.0)
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = soft
    return out


def _pick(rng, mask: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask)
    if len(idx) == 0:
        raise DataError("synthetic lesion placement found no candidate voxel")
    return idx[rng.integers(len(idx))].astype(float)


def glioma(anat: Anatomy, rng, affine) -> dict[str, np.ndarray]:
    """Whole tumour = oedema + enhancing rim + necrotic core (radii in mm)."""
    s = anat.spacing_mm
    depth = ndimage.distance_transform_edt(anat.brain) * s
    centre = _pick(rng, (anat.wm > 0.4) & (depth > 25))
    r_whole = rng.uniform(18, 32) * np.array([1, 1, 1]) * rng.uniform(0.8, 1.2, 3) / s
    whole = blob(anat.brain.shape, centre, r_whole, rng, 0.3) * anat.brain
    core_scale = rng.uniform(0.35, 0.55)
    core = blob(anat.brain.shape, centre, r_whole * core_scale, rng, 0.3) * anat.brain
    necrosis = blob(anat.brain.shape, centre, r_whole * core_scale * rng.uniform(0.4, 0.7), rng, 0.3)
    enhancing = np.clip(core - necrosis, 0, 1)
    oedema = np.clip(whole - core, 0, 1)
    return {"oedema": oedema, "enhancing": enhancing, "necrosis": necrosis * anat.brain}


def wmh(anat: Anatomy, rng, affine, severity: float | None = None) -> dict[str, np.ndarray]:
    """Periventricular caps at the ventricles' frontal and occipital horns + punctate deep lesions."""
    s = anat.spacing_mm
    severity = rng.uniform(0.4, 1.0) if severity is None else severity
    shape = anat.brain.shape
    out = np.zeros(shape, np.float32)
    vent = np.argwhere(anat.ventricles)
    wm = anat.wm > 0.5
    if len(vent):
        for side in (-1, 1):
            for end in ("front", "back"):
                half = vent[(vent[:, 0] - shape[0] / 2) * side > 0]
                if not len(half):
                    continue
                tip = half[np.argmax(half[:, 1])] if end == "front" else half[np.argmin(half[:, 1])]
                tip = tip + np.array([side * 2.0, 3.0 if end == "front" else -3.0, 1.0]) / s
                r = severity * rng.uniform(5, 10, 3) / s
                out = np.maximum(out, blob(shape, tip, r, rng, 0.5))
    depth = ndimage.distance_transform_edt(anat.brain) * s
    for _ in range(int(rng.integers(2, 4 + int(10 * severity)))):
        c = _pick(rng, wm & (depth > 10))
        out = np.maximum(out, blob(shape, c, rng.uniform(1.5, 3.5, 3) / s, rng, 0.3))
    return {"wmh": out * (anat.wm + 0.5 * anat.gm > 0.3)}


def ms(anat: Anatomy, rng, affine) -> dict[str, np.ndarray]:
    """Ovoid periventricular and juxtacortical lesions; some T1 black holes, some enhancing."""
    s = anat.spacing_mm
    shape = anat.brain.shape
    comps = {k: np.zeros(shape, np.float32) for k in ("ms", "ms_blackhole", "ms_enhancing")}
    near_vent = ndimage.binary_dilation(anat.ventricles, iterations=max(1, int(round(4 / s)))) & (anat.wm > 0.4)
    juxta = (anat.wm > 0.4) & ndimage.binary_dilation(anat.gm > 0.6, iterations=1)
    for i in range(int(rng.integers(4, 13))):
        where = near_vent if (i % 2 == 0 and near_vent.any()) else juxta
        c = _pick(rng, where)
        r = rng.uniform(2.0, 4.5, 3) / s
        r[rng.integers(3)] *= rng.uniform(1.3, 2.0)  # ovoid
        kind = rng.choice(["ms", "ms_blackhole", "ms_enhancing"], p=[0.65, 0.2, 0.15])
        comps[kind] = np.maximum(comps[kind], blob(shape, c, r, rng, 0.25))
    return {k: v * anat.brain for k, v in comps.items()}


def _territory_blob(anat: Anatomy, rng, affine, big: bool) -> np.ndarray:
    name = rng.choice(list(_TERRITORIES))
    (cx, cy, cz), spread = _TERRITORIES[name]
    side = rng.choice([-1.0, 1.0])
    centre_mm = np.array([side * cx, cy, cz]) + rng.normal(0, 1, 3) * np.array(spread) * 0.4
    c = _world_to_voxel(anat, affine, centre_mm)
    c = np.clip(c, 0, np.array(anat.brain.shape) - 1)
    r = (rng.uniform(10, 28, 3) if big else rng.uniform(4, 12, 3)) / anat.spacing_mm
    lesion = blob(anat.brain.shape, c, r, rng, 0.6)
    tissue = (anat.gm + anat.wm) > 0.35
    return lesion * tissue


def acute_stroke(anat: Anatomy, rng, affine, shapes: "LesionShapes | None" = None) -> dict[str, np.ndarray]:
    """An infarct in an arterial territory (bright on DWI, subtle elsewhere)."""
    lesion = shapes.sample(rng, anat, affine) if shapes else _territory_blob(anat, rng, affine, rng.random() < 0.6)
    return {"infarct": lesion * ((anat.gm + anat.wm) > 0.2)}


def chronic_stroke(anat: Anatomy, rng, affine, shapes: "LesionShapes | None" = None) -> dict[str, np.ndarray]:
    """A CSF-like cavity with a gliotic rim in an arterial territory (dark on T1)."""
    lesion = shapes.sample(rng, anat, affine) if shapes else _territory_blob(anat, rng, affine, True)
    hard = lesion > 0.5
    core = ndimage.binary_erosion(hard, iterations=1) if hard.sum() > 27 else hard
    cavity = np.where(core, lesion, 0).astype(np.float32)
    gliosis = np.clip(lesion - cavity, 0, 1)
    return {"cavity": cavity, "gliosis": gliosis}


class LesionShapes:
    """Real binary lesion masks (in MNI space, any grid) to draw lesion shapes from.

    Masks are resampled into the subject grid through their affines (nearest neighbour after a linear
    pass, giving a soft edge). Files are read lazily and cached.
    """

    def __init__(self, folders: list[Path]):
        files: list[Path] = []
        for folder in folders:
            folder = Path(folder)
            if not folder.is_dir():
                raise DataError(f"--lesion-masks {folder} is not a folder")
            files += sorted(p for p in folder.iterdir() if p.name.endswith((".nii", ".nii.gz")))
        if not files:
            raise DataError(f"no .nii/.nii.gz lesion masks found in {', '.join(map(str, folders))}")
        self.files = files

    def sample(self, rng, anat: Anatomy, affine: np.ndarray, tries: int = 8) -> np.ndarray:
        for _ in range(tries):
            path = self.files[int(rng.integers(len(self.files)))]
            mask = _resampled_mask(str(path), tuple(anat.brain.shape), tuple(map(tuple, affine)))
            mask = mask * anat.brain
            if mask.sum() > 0.5:
                return mask
        raise DataError(f"none of {tries} sampled lesion masks overlaps the brain on this grid")


@functools.lru_cache(maxsize=256)
def _resampled_mask(path: str, shape: tuple, affine_rows: tuple) -> np.ndarray:
    import nibabel as nib

    img = nib.load(path)
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim != 3:
        raise DataError(f"lesion mask {path} is not 3D")
    target = np.asarray(affine_rows)
    vox = np.linalg.inv(img.affine) @ target  # target voxel -> source voxel
    out = ndimage.affine_transform((data > 0).astype(np.float32), vox[:3, :3], offset=vox[:3, 3],
                                   output_shape=shape, order=1, mode="constant", cval=0.0)
    out.setflags(write=False)
    return out
