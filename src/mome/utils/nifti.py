"""NIfTI reading with the checks every user-facing command needs, and atomic NIfTI writing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mome.errors import InputError
from mome.utils.atomic import atomic_path

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti_path(path: str | os.PathLike) -> bool:
    """True when the file name ends in .nii or .nii.gz."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def strip_nifti_suffix(name: str) -> str:
    """``case.nii.gz`` -> ``case``."""
    for suf in (".nii.gz", ".nii"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def load_nifti(path: str | os.PathLike, *, allow_empty: bool = False, what: str = "image"):
    """Load a 3D NIfTI and check it.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.
        allow_empty: accept an all-zero volume (labels may be empty; images may not).
        what: word used in error messages ("image", "label").

    Returns:
        ``(nibabel image, float32 array)``. A 4D file with one volume is squeezed to 3D.

    Raises:
        InputError: missing file, not NIfTI, unreadable, not 3D, non-finite or all-zero voxels.
    """
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder, expected a .nii or .nii.gz file")
    if not is_nifti_path(path):
        raise InputError(f"{what} {path} is not a NIfTI file (expected .nii or .nii.gz)")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(f"{what} {path} could not be read as NIfTI: {exc}") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
        img = nib.Nifti1Image(data, img.affine, img.header)
    if data.ndim != 3:
        raise InputError(f"{what} {path} has shape {tuple(data.shape)}; mome needs one 3D volume (x, y, z)")
    if min(data.shape) < 2:
        raise InputError(f"{what} {path} has shape {tuple(data.shape)}; a 3D volume needs >= 2 voxels per axis")
    arr = np.asarray(data, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        n = int((~np.isfinite(arr)).sum())
        raise InputError(f"{what} {path} has {n} NaN or infinite voxels; fix or mask them first")
    if not allow_empty and not np.any(arr):
        raise InputError(f"{what} {path} is all zeros")
    if not np.all(np.isfinite(img.affine)) or abs(np.linalg.det(img.affine[:3, :3])) < 1e-12:
        raise InputError(f"{what} {path} has an invalid (singular or non-finite) affine")
    return img, arr


def save_nifti(array: np.ndarray, affine: np.ndarray, path: str | os.PathLike, *, header=None,
               dtype=None, overwrite: bool = False) -> Path:
    """Write ``array`` with ``affine`` atomically (units mm), refusing to replace a file unless ``overwrite``."""
    import nibabel as nib

    arr = np.asarray(array if dtype is None else np.asarray(array).astype(dtype))
    img = nib.Nifti1Image(arr, np.asarray(affine, dtype=np.float64), header=header)
    img.set_data_dtype(arr.dtype)
    img.header.set_xyzt_units("mm")
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    with atomic_path(path, overwrite=overwrite) as tmp:
        nib.save(img, str(tmp))
    return Path(path)
