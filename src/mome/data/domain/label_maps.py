"""Real whole-head label maps (SynthSeg's training maps, FreeSurfer labels) brought into mome's MNI box once.

The maps are read from a folder the user names (``--label-maps DIR``); nothing is copied into the
package. Each map is registered to the MNI152 template through a T1-like image made from its labels
(mome's rigid + affine recipe, :mod:`mome.data.registration`), and the labels are resampled onto the
MNI box with ANTs' ``genericLabel`` interpolation. Results are cached (``~/.cache/mome/label_maps``,
keyed by the file's SHA-256, the spacing and :data:`CACHE_VERSION`) so the registration runs once per map.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mome.errors import InputError

CACHE_VERSION = 1
#: FreeSurfer labels every whole-brain label map has (left/right cerebral white matter and cortex)
REQUIRED_LABELS = (2, 3, 41, 42)

# tissue group of each FreeSurfer label (SynthSeg's labels_table.txt); extra-cerebral labels (>= 500) and
# anything else not listed are "other" (each keeps its own random intensity)
TISSUE_GROUPS: dict[str, tuple[int, ...]] = {
    "wm": (2, 41, 7, 46, 16, 28, 60),
    "cortex": (3, 42),
    "deep_gm": (10, 11, 12, 13, 26, 49, 50, 51, 52, 58),
    "limbic": (17, 18, 53, 54),
    "cerebellum_gm": (8, 47),
    "csf": (4, 5, 14, 15, 24, 43, 44),
}
# T1-like intensity of each group for the registration image (relative; the template is skull-stripped)
_T1_LIKE = {"wm": 1.0, "cortex": 0.6, "deep_gm": 0.75, "limbic": 0.6, "cerebellum_gm": 0.6, "csf": 0.2}


def default_cache_dir() -> Path:
    return Path(os.environ.get("MOME_CACHE", Path.home() / ".cache" / "mome")) / "label_maps"


def group_of(label: int) -> str:
    for group, labels in TISSUE_GROUPS.items():
        if label in labels:
            return group
    return "other"


def find_label_maps(folder: str | os.PathLike) -> list[Path]:
    """The label maps of ``folder``, each checked (readable 3D NIfTI of integer FreeSurfer labels).

    Raises:
        InputError: folder missing or empty; a file that is unreadable, 4D, not integer-valued or without
            the cerebral white-matter and cortex labels (e.g. an intensity image instead of a label map).
    """
    import nibabel as nib

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"label-map folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith((".nii", ".nii.gz")))
    if not files:
        raise InputError(f"label-map folder {folder} has no .nii or .nii.gz files")
    for path in files:
        try:
            img = nib.load(str(path))
            shape = img.shape
        except Exception as exc:  # noqa: BLE001 - nibabel raises many types for broken files
            raise InputError(f"label map {path} is not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
        if len(shape) != 3:
            raise InputError(f"label map {path} has shape {shape}; a label map is one 3D volume")
    # contents of the first file only here (reading 20 x 256^3 maps twice costs ~10 s); each map is
    # checked again when it is loaded for registration
    check_label_array(np.asarray(nib.load(str(files[0])).dataobj), files[0])
    return files


def check_label_array(labels: np.ndarray, path: Path) -> np.ndarray:
    """Integer FreeSurfer labels with the cerebral white matter and cortex, as int32."""
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or not np.array_equal(labels, np.round(labels)):
            raise InputError(f"{path} holds non-integer values: it looks like an image, not a label map")
    labels = labels.astype(np.int32)
    missing = [v for v in REQUIRED_LABELS if not np.any(labels == v)]
    if missing:
        raise InputError(f"{path} lacks the FreeSurfer labels {missing} (cerebral white matter / cortex); "
                         "expected a whole-brain label map like SynthSeg's training maps")
    return labels


@dataclass
class MniLabelMap:
    """One label map on mome's MNI box: ``labels`` (X, Y, Z) int32 and where it came from."""

    labels: np.ndarray
    source: Path
    ncc_after: float


def t1_like(labels: np.ndarray) -> np.ndarray:
    """A skull-stripped T1-like image of a label map (for registration to the MNI152 template)."""
    out = np.zeros(labels.shape, np.float32)
    for group, value in _T1_LIKE.items():
        out[np.isin(labels, TISSUE_GROUPS[group])] = value
    return out


def label_map_to_mni(path: Path, spacing_mm: float = 1.0, cache_dir: Path | None = None) -> MniLabelMap:
    """Register one label map to MNI152 (once; cached) and return its labels on the MNI box."""
    import nibabel as nib

    from mome.data.mni import mni_crop_affine, mni_crop_shape
    from mome.data.registration import FAST, ants_image, ants_reference, register_to_mni
    from mome.utils.atomic import atomic_path
    from mome.utils.provenance import sha256_file

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = f"{sha256_file(path)[:16]}_{spacing_mm:g}mm_v{CACHE_VERSION}"
    cached = cache / f"{key}.nii.gz"
    meta = cache / f"{key}.json"
    if cached.is_file() and meta.is_file():
        return MniLabelMap(np.asarray(nib.load(str(cached)).dataobj, dtype=np.int32), path,
                           float(json.loads(meta.read_text())["ncc_after"]))
    img = nib.as_closest_canonical(nib.load(str(path)))
    labels = check_label_array(np.asarray(img.dataobj), path)
    with tempfile.TemporaryDirectory(prefix="mome-labelmap-") as tmp:
        reg = register_to_mni(t1_like(labels), img.affine, Path(tmp), FAST, mode="always")
        import ants

        warped = ants.apply_transforms(ants_reference(mni_crop_shape(spacing_mm), mni_crop_affine(spacing_mm)),
                                       ants_image(labels.astype(np.float32), img.affine), [str(reg.transform)],
                                       interpolator="genericLabel").numpy()
    out = np.rint(warped).astype(np.int32)
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(cached, overwrite=True) as tmp_path:
        nib.save(nib.Nifti1Image(out, mni_crop_affine(spacing_mm)), str(tmp_path))
    meta.write_text(json.dumps({"source": str(path), "ncc_before": reg.ncc_before, "ncc_after": reg.ncc_after,
                                "seconds": reg.seconds, "spacing_mm": spacing_mm, "version": CACHE_VERSION}))
    return MniLabelMap(out, path, reg.ncc_after)


def load_label_maps(folder: str | os.PathLike, spacing_mm: float = 1.0, cache_dir: Path | None = None,
                    progress=None) -> list[MniLabelMap]:
    """Every label map of ``folder`` on the MNI box (registering the ones not cached yet)."""
    files = find_label_maps(folder)
    out = []
    for path in files:
        out.append(label_map_to_mni(path, spacing_mm, cache_dir))
        if progress is not None:
            progress(path, out[-1])
    return out


def resample_nearest(arr: np.ndarray, affine: np.ndarray, shape: tuple[int, ...],
                     target_affine: np.ndarray) -> np.ndarray:
    """Nearest-neighbour resampling between two voxel grids of one world space (scipy; 0 outside), same dtype."""
    from scipy import ndimage

    mapping = np.linalg.inv(affine) @ target_affine  # target voxel -> source voxel
    return ndimage.affine_transform(arr, mapping[:3, :3], mapping[:3, 3], output_shape=tuple(shape), order=0,
                                    mode="constant", cval=0)


def on_spacing(labels_1mm: np.ndarray, spacing_mm: float) -> np.ndarray:
    """A label map on the 1 mm MNI box resampled (nearest) onto the box at ``spacing_mm``."""
    from mome.data.mni import mni_grid

    if spacing_mm == 1.0:
        return labels_1mm
    shape, affine = mni_grid(spacing_mm)
    return resample_nearest(labels_1mm.astype(np.int32), mni_grid(1.0)[1], shape, affine)
