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


#: largest volume mome reads (2^30 voxels, 4 GiB as float32): a header declaring more is broken or hostile
MAX_VOXELS = 2**30
#: voxel sizes outside (0, MAX_VOXEL_MM] mm are a broken header, not an MR image
MAX_VOXEL_MM = 50.0
#: an image must cover at least this many mm along every axis to hold any brain anatomy
MIN_EXTENT_MM = 10.0


def _check_path(path: Path, what: str) -> None:
    if path.is_symlink() and not path.exists():
        try:
            path.resolve(strict=True)
        except RuntimeError:  # Python < 3.13 reports a loop this way
            raise InputError(f"{what} {path} is a symbolic link loop") from None
        except OSError as exc:
            if "loop" in str(exc).lower() or getattr(exc, "errno", None) == 40:  # ELOOP
                raise InputError(f"{what} {path} is a symbolic link loop") from None
        raise InputError(f"{what} {path} is a broken symbolic link (to {os.readlink(path)})")
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder, expected a .nii or .nii.gz file")
    if not is_nifti_path(path):
        raise InputError(f"{what} {path} is not a NIfTI file (expected .nii or .nii.gz)")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} {path} cannot be read (permission denied)")


def check_header(img, path: Path, what: str = "image") -> tuple[int, ...]:
    """Validate a NIfTI header before any voxel is read; returns the 3D shape.

    Checks the declared dimensions (3D, or 4D with one volume; at most :data:`MAX_VOXELS`), the declared
    data size against the size of an uncompressed file (a truncated or lying header), the data type (no complex or RGB), the
    voxel sizes (pixdim: finite, > 0, at most :data:`MAX_VOXEL_MM`) and the affine (finite, invertible).

    Raises:
        InputError: naming the file and the problem.
    """
    hdr = img.header
    shape = tuple(int(n) for n in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(f"{what} {path} has shape {shape}; mome needs one 3D volume (x, y, z)")
    n = int(np.prod(shape, dtype=np.int64))
    if n > MAX_VOXELS:
        raise InputError(f"{what} {path} declares {shape[0]}x{shape[1]}x{shape[2]} = {n:.3g} voxels, more than "
                         f"the {MAX_VOXELS:.3g} mome reads; the header is broken")
    dtype = img.get_data_dtype()
    if dtype.fields is not None or dtype.kind == "V":
        raise InputError(f"{what} {path} holds RGB / structured voxels ({dtype}); mome needs one grey value "
                         "per voxel")
    if dtype.kind == "c":
        raise InputError(f"{what} {path} holds complex voxels ({dtype}); save the magnitude image instead")
    if dtype.kind not in "biuf":
        raise InputError(f"{what} {path} has an unsupported voxel type {dtype}")
    declared = int(hdr.get_data_offset()) + n * dtype.itemsize
    # an uncompressed file can be measured; a gzip's length is only known by reading it (a gzip trailer
    # holds the size of its last member only), so a truncated .nii.gz is caught when its voxels are read
    if not str(path).lower().endswith(".gz"):
        size = path.stat().st_size
        if size < declared:
            raise InputError(f"{what} {path} is truncated: its header declares {declared} bytes, the file has {size}")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"{what} {path} has an invalid (singular or non-finite) affine")
    raw = _raw_header(img, path)
    # nibabel quietly turns pixdim 0 into 1 mm and negative into positive on load: judge the file's own
    # values where they define the voxel size (no sform: the qform or the bare pixdim do)
    zooms = np.asarray((raw if raw is not None and int(raw["sform_code"]) == 0 else hdr)["pixdim"][1:4], np.float64)
    if int(hdr["sform_code"]) > 0:
        zooms = np.sqrt((np.asarray(img.affine)[:3, :3] ** 2).sum(0))
    if not np.all(np.isfinite(zooms)) or np.any(zooms <= 0) or np.any(zooms > MAX_VOXEL_MM):
        shown = ", ".join(f"{z:g}" for z in zooms)
        raise InputError(f"{what} {path} has voxel sizes ({shown}) mm in its header (pixdim); each must be "
                         f"> 0 and <= {MAX_VOXEL_MM:g} mm: fix the header")
    return shape


def _raw_header(img, path: Path):
    """The header as stored in the file (nibabel's loader fixes some fields), or None if unreadable."""
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(str(path)) as fh:
            return type(img.header).from_fileobj(fh, check=False)
    except Exception:  # noqa: BLE001 - the normal load already succeeded; fall back to its header
        return None


def load_nifti(path: str | os.PathLike, *, allow_empty: bool = False, what: str = "image"):
    """Load a 3D NIfTI and check it: the header first (:func:`check_header`), then the voxels.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.
        allow_empty: accept an all-zero volume (labels, masks and predictions may be empty).
        what: word used in error messages ("image", "label").

    Returns:
        ``(nibabel image, float32 array)``. A 4D file with one volume is squeezed to 3D.

    Raises:
        InputError: missing file, not NIfTI, unreadable, bad header, not 3D, non-finite or all-zero voxels.
    """
    import nibabel as nib

    path = Path(path)
    _check_path(path, what)
    try:
        img = nib.load(str(path))
    except EOFError as exc:
        raise InputError(f"{what} {path} is truncated: the compressed data ends early ({_reason(exc)})") from exc
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(f"{what} {path} could not be read as NIfTI: {_reason(exc)}") from exc
    shape = check_header(img, path, what)
    if min(shape) < 2:
        raise InputError(f"{what} {path} has shape {shape}; a 3D volume needs >= 2 voxels per axis")
    try:
        raw = np.asanyarray(img.dataobj.get_unscaled())
        data = np.asanyarray(img.dataobj)
    except EOFError as exc:  # gzip: the compressed stream stops early
        raise InputError(f"{what} {path} is truncated: the compressed data ends early ({_reason(exc)})") from exc
    except Exception as exc:
        raise InputError(f"{what} {path} could not be read as NIfTI: {_reason(exc)}") from exc
    if data.ndim == 4:
        raw, data = raw[..., 0], data[..., 0]
        img = nib.Nifti1Image(data, img.affine, img.header)
    with np.errstate(over="ignore", invalid="ignore"):
        arr = np.asarray(data, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        bad = int((~np.isfinite(arr)).sum())
        if np.issubdtype(raw.dtype, np.integer) or np.all(np.isfinite(raw)):
            slope, inter = img.header.get_slope_inter()
            raise InputError(f"{what} {path}: its scaling (scl_slope={slope}, scl_inter={inter}) makes {bad} "
                             "voxels overflow float32; fix the header")
        raise InputError(f"{what} {path} has {bad} NaN or infinite voxels; fix or mask them first")
    if not allow_empty and not np.any(arr):
        raise InputError(f"{what} {path} is all zeros")
    return img, arr


def check_segmentable(img, arr: np.ndarray, path, what: str = "image") -> None:
    """Refuse an image that holds nothing to segment (what ``mome predict`` checks before the model runs).

    Constant, two-valued (a mask given as the image), or under :data:`MIN_EXTENT_MM` mm along an axis
    (too small to hold brain anatomy and, after resampling, for the network). Training and collection
    checks do not apply this: the tests' toy volumes are smaller than a brain.

    Raises:
        InputError: naming the file and the problem.
    """
    lo, hi = float(arr.min()), float(arr.max())
    if lo == hi:
        raise InputError(f"{what} {path} is constant (every voxel is {lo:g}): it holds no image to segment")
    if np.unique(arr).size <= 2:
        raise InputError(f"{what} {path} has only two values ({lo:g}, {hi:g}): it looks like a mask, not an MR "
                         "image")
    extent = np.asarray(arr.shape[:3]) * np.sqrt((np.asarray(img.affine)[:3, :3] ** 2).sum(0))
    if np.any(extent < MIN_EXTENT_MM):
        shown = " x ".join(f"{e:.3g}" for e in extent)
        raise InputError(f"{what} {path} covers only {shown} mm; a brain image covers at least "
                         f"{MIN_EXTENT_MM:g} mm along every axis")


def _reason(exc: Exception) -> str:
    """The message of a reading error, never empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
