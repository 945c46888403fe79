"""Training volumes: read, reorient to RAS, z-score in the brain, resample, and index the lesion voxels.

The steps and their order are the predictor's (``mome.inference.predictor``): RAS voxel order, z-score
over the brain (non-zero voxels) with :func:`mome.data.intensity.zscore_in_brain`, then trilinear
resampling to the training spacing. Labels use nnU-Net's encoding for ``use_mask_for_norm``: -1 outside
the brain, 0 background, 1 lesion (the augmentation resets the image to 0 where the label is -1, then
turns -1 into 0).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mome.data.collection import Case
from mome.errors import DataError

MAX_FOREGROUND_VOXELS = 10_000  # nnU-Net keeps at most 10k sampled locations per class


@dataclass
class PreparedCase:
    """One training volume ready for patch sampling.

    Attributes:
        case: the collection entry (id, modality, dataset, task...).
        image: (X, Y, Z) float32, z-scored in the brain, RAS voxel order, training spacing.
        label: (X, Y, Z) int8: -1 outside the brain, 0 background, 1 lesion.
        foreground: (K, 3) int32 voxel indices of lesion voxels (at most 10,000, sampled).
        tissue: optional (X, Y, Z) int8 tissue class per voxel, 0 = unknown (only generated volumes know
            it: :data:`mome.data.domain.generator.TISSUE_CLASSES`).
    """

    case: Case
    image: np.ndarray
    label: np.ndarray
    foreground: np.ndarray
    tissue: np.ndarray | None = None


def case_spacing(case: Case) -> tuple[float, float, float]:
    """Voxel spacing (mm) of a case's image along the RAS axes (header only)."""
    import nibabel as nib

    from mome.inference.geometry import Reorientation, voxel_spacing

    try:
        img = nib.load(str(case.image))
    except Exception as exc:  # nibabel raises many types for missing or corrupt files
        raise DataError(f"case {case.id}: image {case.image} could not be read: {exc}") from exc
    return Reorientation.from_affine(img.affine).spacing_to_ras(voxel_spacing(img.affine))


def training_spacing(cases: Sequence[Case]) -> list[float]:
    """The median spacing (mm, RAS axes) of ``cases``: the grid every case is resampled to (nnU-Net's rule)."""
    spacings = np.array([case_spacing(c) for c in cases], dtype=np.float64)
    return [float(s) for s in np.median(spacings, axis=0)]


def prepare_case(case: Case, spacing_mm: Sequence[float]) -> PreparedCase:
    """Load one case and bring it to the training grid (see the module docstring).

    Raises:
        DataError: unreadable files, a missing label, or image and label of different shapes.
    """
    from mome.data.intensity import zscore_in_brain
    from mome.errors import InputError
    from mome.inference.geometry import Reorientation, needs_resampling, resample, resampled_shape, voxel_spacing
    from mome.utils.nifti import load_nifti

    if case.label is None:
        raise DataError(f"case {case.id} has no label; training needs a label for every case")
    try:
        img, image = load_nifti(case.image, what=f"image of case {case.id}")
        _, label = load_nifti(case.label, allow_empty=True, what=f"label of case {case.id}")
    except InputError as exc:
        raise DataError(str(exc)) from exc
    if image.shape != label.shape:
        raise DataError(f"case {case.id}: image shape {image.shape} differs from label shape {label.shape}")
    reor = Reorientation.from_affine(img.affine)
    image = reor.to_ras(image)
    label = reor.to_ras(label)
    spacing = reor.spacing_to_ras(voxel_spacing(img.affine))
    brain = image != 0
    image = zscore_in_brain(image, brain)
    lesion = label > 0.5
    if needs_resampling(spacing, tuple(spacing_mm), tolerance=0.01):
        shape = resampled_shape(image.shape, spacing, tuple(spacing_mm))
        image = resample(image, shape).numpy()
        lesion = resample(lesion.astype(np.float32), shape).numpy() > 0.5
        brain = resample(brain.astype(np.float32), shape).numpy() > 0.5
    seg = np.where(brain | lesion, 0, -1).astype(np.int8)
    seg[lesion] = 1
    image = np.where(seg >= 0, image, 0).astype(np.float32)
    return PreparedCase(case, np.ascontiguousarray(image), seg, foreground_voxels(seg, case.id))


def foreground_voxels(seg: np.ndarray, key: str) -> np.ndarray:
    """Up to :data:`MAX_FOREGROUND_VOXELS` lesion voxel indices, sampled reproducibly (seeded by ``key``)."""
    coords = np.argwhere(seg == 1).astype(np.int32)
    if len(coords) > MAX_FOREGROUND_VOXELS:
        rng = np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16))
        coords = coords[np.sort(rng.choice(len(coords), MAX_FOREGROUND_VOXELS, replace=False))]
    return coords


def load_cases(cases: Sequence[Case], spacing_mm: Sequence[float], cache_dir: str | os.PathLike | None = None,
               progress: Callable[[Iterable[Case]], Iterable[Case]] | None = None) -> list[PreparedCase]:
    """Prepare every case, in memory or through a memory-mapped ``.npy`` cache.

    Args:
        cases: the training cases.
        spacing_mm: the training grid spacing (mm, RAS axes).
        cache_dir: None keeps arrays in RAM; a folder keeps them on disk (reused when the image, label
            and spacing are unchanged; keyed by a hash of paths, sizes, modification times and spacing).
        progress: optional wrapper around the case iterator.
    """
    if not cases:
        raise DataError("no training cases to load")
    it = cases if progress is None else progress(cases)
    if cache_dir is None:
        return [prepare_case(c, spacing_mm) for c in it]
    root = Path(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    return [_cached(c, spacing_mm, root) for c in it]


def _cache_key(case: Case, spacing_mm: Sequence[float]) -> str:
    h = hashlib.sha256()
    for p in (case.image, case.label):
        st = Path(p).stat()
        h.update(f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}|".encode())
    h.update(repr([round(float(s), 6) for s in spacing_mm]).encode())
    return h.hexdigest()[:16]


def _cached(case: Case, spacing_mm: Sequence[float], root: Path) -> PreparedCase:
    from mome.utils.atomic import atomic_path

    if case.label is None or not Path(case.image).exists() or not Path(case.label).exists():
        return prepare_case(case, spacing_mm)  # raises the clear error
    stem = root / f"{_safe(case.id)}_{_cache_key(case, spacing_mm)}"
    files = {k: stem.with_name(f"{stem.name}_{k}.npy") for k in ("image", "label", "fg")}
    if not all(f.exists() for f in files.values()):
        prepared = prepare_case(case, spacing_mm)
        for key, arr in (("image", prepared.image), ("label", prepared.label), ("fg", prepared.foreground)):
            with atomic_path(files[key], overwrite=True) as tmp:
                with open(tmp, "wb") as fh:  # np.save on a path would append ".npy" to the temporary name
                    np.save(fh, arr)
    return PreparedCase(case, np.load(files["image"], mmap_mode="r"), np.load(files["label"], mmap_mode="r"),
                        np.load(files["fg"]))


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
