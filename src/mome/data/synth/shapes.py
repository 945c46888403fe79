"""Real lesion shapes: binary masks in MNI space (any grid) drawn into synthetic subjects.

Used behind ``mome synth --lesion-masks KIND=DIR`` (e.g. ``stroke=../shared/data/lesion_masks/stroke_mni``);
the default generator needs no files. Masks are resampled through their affines onto the preset's MNI
grid and then warped by the subject's deformation, so they sit where the anatomy sits.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from mome.data.synth.anatomy import Anatomy
from mome.errors import DataError

SHAPE_KINDS = ("stroke", "ms")
"""``stroke``: acute (ISLES-like) and chronic (ATLAS-like) infarcts; ``ms``: MS lesions (MSSEG, WMHsMix)."""


def parse_lesion_mask_args(values: list[str | os.PathLike] | None) -> dict[str, list[Path]]:
    """``["stroke=DIR", "DIR2"]`` -> ``{"stroke": [DIR], "ms": [DIR2]}``; checks every folder.

    A bare folder's kind is read from its name (containing ``stroke`` or ``ms``); otherwise it must be
    given as ``KIND=DIR``.

    Raises:
        DataError: unknown kind, kind not guessable, missing folder, or a folder without NIfTI files.
    """
    out: dict[str, list[Path]] = {}
    for value in values or []:
        text = str(value)
        kind, sep, folder = text.partition("=")
        if not sep:
            folder = text
            name = Path(text).name.lower()
            guesses = [k for k in SHAPE_KINDS if k in name.replace("-", "_").split("_") or name.startswith(k)]
            if len(guesses) != 1:
                raise DataError(f"--lesion-masks {text}: cannot tell the lesion kind from the folder name; "
                                f"write it as KIND=DIR with KIND one of {', '.join(SHAPE_KINDS)}")
            kind = guesses[0]
        if kind not in SHAPE_KINDS:
            raise DataError(f"--lesion-masks {text}: unknown lesion kind {kind!r}; "
                            f"expected one of {', '.join(SHAPE_KINDS)}")
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise DataError(f"--lesion-masks {text}: {path} is not a folder of lesion masks")
        out.setdefault(kind, []).append(path)
    return out


class LesionShapes:
    """A pool of real binary lesion masks (NIfTI, MNI space) to draw lesion shapes from.

    Args:
        folders: folders holding ``.nii`` / ``.nii.gz`` masks (non-zero = lesion).

    Raises:
        DataError: a folder is missing or holds no NIfTI file.
    """

    def __init__(self, folders: list[Path]):
        files: list[Path] = []
        for folder in folders:
            folder = Path(folder)
            if not folder.is_dir():
                raise DataError(f"lesion-mask folder {folder} does not exist")
            found = sorted(p for p in folder.iterdir() if p.name.lower().endswith((".nii", ".nii.gz")))
            if not found:
                raise DataError(f"lesion-mask folder {folder} holds no .nii/.nii.gz file")
            files += found
        self.files = files

    def sample(self, rng: np.random.Generator, anat: Anatomy, tries: int = 8) -> np.ndarray:
        """A random mask on the subject's grid (soft 0..1, inside the brain).

        Raises:
            DataError: an unreadable mask, or ``tries`` masks in a row that vanish on this grid.
        """
        for _ in range(tries):
            path = self.files[int(rng.integers(len(self.files)))]
            mask = anat.warp(resample_mask(path, anat.brain.shape, anat.affine)) * anat.brain
            if (mask > 0.5).any():
                return mask
        raise DataError(f"{tries} lesion masks drawn from {self.files[0].parent} vanished on the "
                        f"{anat.spacing_mm:g} mm grid (too small or outside the brain); use a finer preset")


def resample_mask(path: Path, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """Read a binary mask and resample it (linear, partial volume) onto the grid ``(shape, affine)``."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise DataError(f"lesion mask {path} could not be read as NIfTI: {exc}") from exc
    data = np.squeeze(data)
    if data.ndim != 3:
        raise DataError(f"lesion mask {path} has shape {data.shape}; expected a 3D mask")
    mask = (data > 0).astype(np.float32)
    src_zoom = np.sqrt((img.affine[:3, :3] ** 2).sum(0))
    dst_zoom = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(0))
    # partial volume: a coarse voxel should get the lesion fraction it covers. Linear sampling between
    # two fine voxels already averages 2 of them; a (ratio - 1) box filter first approximates the rest.
    size = np.maximum(np.round(dst_zoom / src_zoom) - 1, 1).astype(int)
    if np.any(size > 1):
        mask = ndimage.uniform_filter(mask, size=tuple(size), mode="constant")
    vox = np.linalg.inv(img.affine) @ np.asarray(affine, dtype=float)  # target voxel -> source voxel
    return ndimage.affine_transform(mask, vox[:3, :3], offset=vox[:3, 3], output_shape=tuple(shape), order=1,
                                    mode="constant", cval=0.0).astype(np.float32)
