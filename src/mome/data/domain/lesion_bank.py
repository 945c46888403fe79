"""Real lesion shapes (MS and stroke masks already in MNI space) on mome's MNI box, kept as small crops.

The masks are read from folders the user names (``--lesion-masks DIR``, one sub-folder per kind:
``ms_mni/``, ``stroke_mni/`` as in ``../shared/data/lesion_masks``); nothing is copied into the package.
Each mask is resampled (nearest) from its own MNI grid (FSL's 182x218x182, SPM's 157x189x136 box...)
onto the box at the training spacing through the two affines, and stored as its bounding-box crop, so
1,293 stroke masks take a few MB. The bank is cached as one ``.npz`` per (folder, spacing).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mome.errors import InputError

#: sub-folder name -> lesion type (mome.data.constants.LESION_TYPES)
KINDS = {"ms_mni": "ms", "stroke_mni": "stroke_acute"}
CACHE_VERSION = 1


@dataclass
class LesionCrop:
    """One lesion mask on the MNI box: ``mask`` (bool crop) whose first voxel is at ``offset``."""

    offset: tuple[int, int, int]
    mask: np.ndarray


@dataclass
class LesionBank:
    """Lesion crops per lesion type, on the MNI box of one spacing."""

    shape: tuple[int, int, int]
    crops: dict[str, list[LesionCrop]] = field(default_factory=dict)

    def types(self) -> list[str]:
        return [k for k, v in self.crops.items() if v]

    def paste(self, kind: str, rng: np.random.Generator, flip: bool = True) -> np.ndarray:
        """A full-box bool mask holding one random lesion of ``kind`` (left-right flipped half the time)."""
        crop = self.crops[kind][int(rng.integers(len(self.crops[kind])))]
        out = np.zeros(self.shape, dtype=bool)
        sl = tuple(slice(o, o + n) for o, n in zip(crop.offset, crop.mask.shape))
        out[sl] = crop.mask
        if flip and rng.random() < 0.5:
            out = out[::-1].copy()  # RAS box centred on the midline (+-0.5 voxel)
        return out


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith((".nii", ".nii.gz")))


def check_lesion_folder(folder: str | os.PathLike) -> dict[str, list[Path]]:
    """The mask files per lesion type under ``folder`` (``ms_mni/``, ``stroke_mni/``), checked.

    Raises:
        InputError: folder missing; no known sub-folder with masks; the first mask of a kind unreadable,
            not 3D or not binary (e.g. an image instead of a mask).
    """
    import nibabel as nib

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"lesion-mask folder {folder} does not exist")
    found = {KINDS[d.name]: _nifti_files(d) for d in sorted(folder.iterdir()) if d.is_dir() and d.name in KINDS}
    found = {k: v for k, v in found.items() if v}
    if not found:
        raise InputError(f"lesion-mask folder {folder} has no {' or '.join(f'{k}/' for k in KINDS)} sub-folder "
                         "with .nii/.nii.gz masks")
    for files in found.values():
        path = files[0]
        try:
            arr = np.asarray(nib.load(str(path)).dataobj)
        except Exception as exc:  # noqa: BLE001 - nibabel raises many types for broken files
            raise InputError(f"lesion mask {path} is not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
        if arr.ndim != 3:
            raise InputError(f"lesion mask {path} has shape {arr.shape}; a mask is one 3D volume")
        if not np.all(np.isin(np.unique(arr), (0, 1))):
            raise InputError(f"lesion mask {path} is not binary (0/1): it looks like an image, not a mask")
    return found


def load_lesion_bank(folder: str | os.PathLike, spacing_mm: float = 1.0, cache_dir: Path | None = None,
                     min_voxels: int = 3) -> LesionBank:
    """Every mask under ``folder`` on mome's MNI box at ``spacing_mm`` (cached)."""
    import nibabel as nib

    from mome.data.domain.label_maps import default_cache_dir, resample_nearest
    from mome.data.mni import mni_grid

    files = check_lesion_folder(folder)
    shape, affine = mni_grid(spacing_mm)
    names = "\n".join(f"{k}:{p.name}:{p.stat().st_size}" for k, v in files.items() for p in v)
    key = hashlib.sha256(f"{Path(folder).resolve()}\n{names}\n{spacing_mm}\n{CACHE_VERSION}".encode()).hexdigest()[:16]
    cache = (Path(cache_dir) if cache_dir is not None else default_cache_dir().parent / "lesion_banks") / f"{key}.npz"
    bank = LesionBank(tuple(shape))
    if cache.is_file():
        data = np.load(cache, allow_pickle=False)
        for kind in files:
            masks, offsets, sizes = data[f"{kind}_masks"], data[f"{kind}_offsets"], data[f"{kind}_sizes"]
            starts = np.concatenate([[0], np.cumsum([int(np.prod(s)) for s in sizes])])
            bank.crops[kind] = [LesionCrop(tuple(int(v) for v in o), masks[a:b].reshape(s).astype(bool))
                                for o, s, a, b in zip(offsets, sizes, starts[:-1], starts[1:])]
        return bank
    arrays = {}
    for kind, paths in files.items():
        crops = []
        for path in paths:
            img = nib.load(str(path))
            box = resample_nearest((np.asarray(img.dataobj) > 0).astype(np.uint8), img.affine, shape, affine) > 0
            if box.sum() < min_voxels:
                continue
            idx = np.argwhere(box)
            lo, hi = idx.min(0), idx.max(0) + 1
            crops.append(LesionCrop(tuple(int(v) for v in lo), box[tuple(slice(a, b) for a, b in zip(lo, hi))]))
        bank.crops[kind] = crops
        arrays[f"{kind}_masks"] = np.concatenate([c.mask.ravel() for c in crops]) if crops else np.zeros(0, bool)
        arrays[f"{kind}_offsets"] = np.array([c.offset for c in crops], dtype=np.int32).reshape(-1, 3)
        arrays[f"{kind}_sizes"] = np.array([c.mask.shape for c in crops], dtype=np.int32).reshape(-1, 3)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, cache)
    return bank
