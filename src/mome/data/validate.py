"""File-level validation of a collection: every image and label exists, matches and is binary.

:func:`mome.data.collection.load_collection` checks the manifest's structure only; this module opens
the files. Geometry comes from NIfTI headers (cheap: nibabel reads no voxel data for the shape and
affine); label values need the voxel data, so each label file is read once even when several cases
(the modalities of one subject) share it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mome.data.collection import SPLITS, Case, Collection
from mome.data.constants import LESION_TYPES, MODALITIES
from mome.errors import DataError, InputError
from mome.utils.nifti import check_header, is_nifti_path, load_nifti

AFFINE_ATOL = 1e-3
"""Largest element-wise difference (mm for the translation column) accepted between image and label
affines; NIfTI stores qform in float32, so exact equality is too strict."""

MAX_LISTED = 5


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one case."""

    case_id: str
    message: str

    def __str__(self) -> str:
        return f"case {self.case_id!r}: {self.message}"


@dataclass(frozen=True)
class Geometry:
    """Shape (voxels) and voxel-to-world affine (RAS, mm) read from a NIfTI header."""

    shape: tuple[int, ...]
    affine: np.ndarray


def read_geometry(path: str | os.PathLike) -> Geometry:
    """Read shape and affine from a NIfTI header (no voxel data). 4D files with one volume count as 3D.

    Raises:
        DataError: missing, not NIfTI, unreadable, or not one 3D volume.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    if not is_nifti_path(path):
        raise DataError(f"{path} is not a NIfTI file (expected .nii or .nii.gz)")
    try:
        img = nib.load(str(path))
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:  # nibabel raises many types for corrupt headers
        raise DataError(f"{path} could not be read as NIfTI: {exc}") from exc
    try:  # the raw header: dims, declared size vs file size, dtype, pixdim, affine
        shape = check_header(img, path, what="file")
    except InputError as exc:
        raise DataError(str(exc).removeprefix("file ")) from exc
    return Geometry(shape, affine)


def image_problem(path: str | os.PathLike) -> str | None:
    """Why the voxels of an image cannot be used (truncated, NaN or infinite, all zero...), or None."""
    try:
        load_nifti(path, what="image")
    except InputError as exc:
        return str(exc).removeprefix("image ")
    return None


def label_values(path: str | os.PathLike) -> np.ndarray:
    """The distinct voxel values of a label file (reads the data)."""
    import nibabel as nib

    try:
        data = np.asanyarray(nib.load(str(path)).dataobj)
    except Exception as exc:
        raise DataError(f"label {path} could not be read: {exc}") from exc
    return np.unique(data)


def format_values(values: Iterable, limit: int = 8) -> str:
    """``[0, 1, 2.5, ...]`` -> ``"0, 1, 2.5"`` (at most ``limit`` values, then the count)."""
    vals = [float(v) for v in values]
    shown = ", ".join(f"{v:g}" for v in vals[:limit])
    return shown + (f" ... ({len(vals)} distinct values)" if len(vals) > limit else "")


def geometry_mismatch(image: Geometry, label: Geometry, atol: float = AFFINE_ATOL) -> str | None:
    """A sentence describing how two geometries differ, or None when they match."""
    if image.shape != label.shape:
        return f"label shape {label.shape} differs from image shape {image.shape}"
    diff = float(np.max(np.abs(image.affine - label.affine)))
    if diff > atol:
        return (f"label affine differs from the image affine by up to {diff:.4g} (tolerance {atol:g}); "
                "resample the label onto the image grid")
    return None


class _Checker:
    """Checks cases one by one, caching header and label reads shared between cases."""

    def __init__(self, check_files: bool, check_label_values: bool, atol: float):
        self.check_files = check_files
        self.check_label_values = check_label_values
        self.atol = atol
        self._geo: dict[Path, Geometry | DataError] = {}
        self._values: dict[Path, np.ndarray | DataError] = {}
        self._image_checked: dict[Path, str | None] = {}

    def geometry(self, path: Path) -> Geometry:
        key = Path(path).resolve()
        if key not in self._geo:
            try:
                self._geo[key] = read_geometry(key)
            except DataError as exc:
                self._geo[key] = exc
        got = self._geo[key]
        if isinstance(got, DataError):
            raise got
        return got

    def values(self, path: Path) -> np.ndarray:
        key = Path(path).resolve()
        if key not in self._values:
            try:
                self._values[key] = label_values(key)
            except DataError as exc:
                self._values[key] = exc
        got = self._values[key]
        if isinstance(got, DataError):
            raise got
        return got

    def check(self, case: Case) -> list[str]:
        msgs = []
        if case.modality not in MODALITIES:
            msgs.append(f"unknown modality {case.modality!r}; expected one of {', '.join(MODALITIES)}")
        if case.lesion_type not in LESION_TYPES:
            msgs.append(f"unknown lesion_type {case.lesion_type!r}; expected one of {', '.join(LESION_TYPES)}")
        if case.split not in SPLITS:
            msgs.append(f"split {case.split!r}; expected 'train' or 'test'")
        if not self.check_files:
            return msgs
        try:
            img_geo = self.geometry(case.image)
        except DataError as exc:
            msgs.append(f"image {exc}")
            img_geo = None
        if img_geo is not None and self.check_label_values:  # reading voxels: the images' too
            key = Path(case.image).resolve()
            if key not in self._image_checked:
                self._image_checked[key] = image_problem(key)
            if self._image_checked[key]:
                msgs.append(f"image {self._image_checked[key]}")
        if case.label is None:
            return msgs
        try:
            lab_geo = self.geometry(case.label)
        except DataError as exc:
            msgs.append(f"label {exc}")
            return msgs
        if img_geo is not None:
            why = geometry_mismatch(img_geo, lab_geo, self.atol)
            if why:
                msgs.append(f"{why} (image {case.image}, label {case.label})")
        if self.check_label_values:
            try:
                vals = self.values(case.label)
            except DataError as exc:
                msgs.append(str(exc))
                return msgs
            bad = vals[~np.isin(vals, (0, 1))]
            if bad.size:
                msgs.append(f"label {case.label} is not binary: it has values {format_values(vals)}; a label "
                            "must hold only 0 and 1 (re-import with `mome collection import ... "
                            "--lesion-labels` to choose which values are lesion)")
        return msgs


def find_problems(collection: Collection, check_files: bool = True, check_label_values: bool = True,
                  affine_atol: float = AFFINE_ATOL,
                  progress: Callable[[Iterable[Case]], Iterable[Case]] | None = None) -> list[Problem]:
    """Every problem of every case (empty when the collection is valid).

    Args:
        collection: the cases to check.
        check_files: open the image and label files (headers; labels also their values).
        check_label_values: read the voxels (the slow part): labels must be 0/1, images finite, complete and
            not all zero.
        affine_atol: tolerance on image vs label affine elements (mm for translations).
        progress: optional wrapper around the case iterator (e.g. ``rich.progress.track``).
    """
    problems = [Problem(cid, "duplicate case id (ids must be unique)")
                for cid, n in Counter(c.id for c in collection.cases).items() if n > 1]
    checker = _Checker(check_files, check_label_values, affine_atol)
    cases: Iterable[Case] = collection.cases if progress is None else progress(collection.cases)
    for case in cases:
        problems.extend(Problem(case.id, m) for m in checker.check(case))
    return problems


def validate_collection(collection: Collection, check_files: bool = True, check_label_values: bool = True,
                        affine_atol: float = AFFINE_ATOL,
                        progress: Callable[[Iterable[Case]], Iterable[Case]] | None = None) -> Collection:
    """Check a collection and raise on the first problems found.

    Checks: duplicate ids, unknown modality / lesion type / split, missing or unreadable image and
    label files, image vs label shape or affine mismatch, label values other than 0 and 1.

    Returns:
        The collection itself (so ``validate_collection(load_collection(p))`` chains).

    Raises:
        DataError: naming the case(s) and what is wrong with each (the first five problems, then a count).
    """
    problems = find_problems(collection, check_files, check_label_values, affine_atol, progress)
    if problems:
        raise problems_error(f"collection {collection.name!r} is invalid", problems)
    return collection


def problems_error(what: str, problems: list[Problem], suffix: str = "") -> DataError:
    """One :class:`DataError` listing the first problems (each names its case) and how many there are."""
    shown = "; ".join(str(p) for p in problems[:MAX_LISTED])
    more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
    return DataError(f"{what}: {len(problems)} problem(s): {shown}{more}{suffix}")
