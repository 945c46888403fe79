"""The MNI152 space MoME works in: the 160x196x160 mm box at 1 mm (paper Sec. 3.1) and coarser grids.

The box is fixed in MNI world coordinates (RAS, mm). At 1 mm its voxel centres run over
x -80..79, y -116..79, z -74..85 (``MNI_BOX_ORIGIN_MM`` is the first voxel centre), i.e. the box spans
x [-80.5, 79.5), y [-116.5, 79.5), z [-74.5, 85.5) mm. It holds the whole MNI152 brain (mask extent
x -72..72, y -107..73, z -72..82) with a margin on every side.

The reference is nilearn's MNI152 2009 template at 1 mm (shipped inside its wheel, works offline):
197 x 233 x 189 voxels, affine ``diag(1, 1, 1)`` with origin (-98, -134, -72) mm. The 1 mm box starts
at template voxel ``MNI_CROP_OFFSET = (18, 18, -2)``: its two lowest slices lie below the template's
field of view and are zero in the template maps (real scans registered to MNI still fill them).

At spacing s mm the grid has round(160/s) x round(196/s) x round(160/s) voxels covering the same box
(the box stays centred, so the first voxel centre moves by (s - 1) / 2 mm).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from mome.errors import ConfigError

MNI_CROP_SHAPE = (160, 196, 160)
"""Shape of the box at 1 mm (voxels, x y z, RAS axes)."""
MNI_BOX_ORIGIN_MM = (-80.0, -116.0, -74.0)  # world coordinate of the 1 mm grid's first voxel centre
MNI_TEMPLATE_SHAPE = (197, 233, 189)
MNI_TEMPLATE_ORIGIN_MM = (-98.0, -134.0, -72.0)
MNI_CROP_OFFSET = tuple(int(b - t) for b, t in zip(MNI_BOX_ORIGIN_MM, MNI_TEMPLATE_ORIGIN_MM))
"""Index of the box's first 1 mm voxel in nilearn's 197 x 233 x 189 template: (18, 18, -2)."""

AUTHORS_BOX_ORIGIN_MM = (-78.0, -114.0, -72.0)
"""First voxel centre of the authors' crop ``[20:180, 20:216, 0:160]`` of the 197 x 233 x 189 template
(``Codes_prepro/crop.py``): mome's box moved by +2 mm on every axis."""

MAP_KINDS = ("t1", "gm", "wm", "csf", "mask")


def authors_crop_affine() -> np.ndarray:
    """The affine of the authors' 160 x 196 x 160 crop at 1 mm (RAS)."""
    affine = np.eye(4)
    affine[:3, 3] = AUTHORS_BOX_ORIGIN_MM
    return affine


@functools.lru_cache(maxsize=4)
def _template_mask_on(shape: tuple[int, int, int], affine_bytes: bytes) -> np.ndarray:
    from nilearn import datasets, image

    affine = np.frombuffer(affine_bytes).reshape(4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        img = image.resample_img(datasets.load_mni152_brain_mask(resolution=1), target_affine=affine,
                                 target_shape=shape, interpolation="linear", force_resample=True, copy_header=True)
    mask = np.asarray(img.get_fdata()) > 0.5
    mask.setflags(write=False)
    return mask


def template_mask_on(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """nilearn's MNI152 brain mask (partial volume > 0.5) on any 1 mm grid in MNI space (read-only bool)."""
    return _template_mask_on(tuple(int(n) for n in shape), np.asarray(affine, dtype=np.float64).tobytes())


def _spacing(spacing_mm: float) -> float:
    try:
        s = float(spacing_mm)
    except (TypeError, ValueError):
        raise ConfigError(f"spacing {spacing_mm!r} is not a number (mm)") from None
    if not np.isfinite(s) or s <= 0:
        raise ConfigError(f"spacing must be a positive number of mm, got {spacing_mm!r}")
    return s


def mni_grid(spacing_mm: float = 1.0) -> tuple[tuple[int, int, int], np.ndarray]:
    """``(shape, affine)`` of the MNI box sampled at ``spacing_mm`` (RAS voxel axes, affine in mm)."""
    s = _spacing(spacing_mm)
    shape = tuple(int(round(n / s)) for n in MNI_CROP_SHAPE)
    affine = np.diag([s, s, s, 1.0])
    # the 1 mm grid's first voxel centre sits on the box corner; coarser grids keep the box centred
    affine[:3, 3] = [o + (s - 1.0) / 2 for o in MNI_BOX_ORIGIN_MM]
    return shape, affine  # type: ignore[return-value]


def mni_crop_shape(spacing_mm: float = 1.0) -> tuple[int, int, int]:
    """The shape of :func:`mni_grid` alone (160 x 196 x 160 at 1 mm)."""
    return mni_grid(spacing_mm)[0]


def mni_crop_affine(spacing_mm: float = 1.0) -> np.ndarray:
    """The affine of :func:`mni_grid` alone."""
    return mni_grid(spacing_mm)[1]


@functools.lru_cache(maxsize=8)
def mni_maps(spacing_mm: float = 1.0) -> dict[str, np.ndarray]:
    """MNI152 T1 template, GM and WM probability, CSF (brain mask x (1 - GM - WM)) and brain mask,
    resampled (linear) onto the box at ``spacing_mm``. Arrays are float32 in [0, 1], read-only.

    At 1 mm the box is aligned with the template's voxels, so the maps are the template's values
    (zero in the two slices below its field of view). The mask is 0/1 (partial volume > 0.5).
    """
    from nilearn import datasets, image

    shape, affine = mni_grid(spacing_mm)
    loaders = {
        "t1": lambda: datasets.load_mni152_template(resolution=1),
        "gm": lambda: datasets.load_mni152_gm_template(resolution=1),
        "wm": lambda: datasets.load_mni152_wm_template(resolution=1),
        "mask": lambda: datasets.load_mni152_brain_mask(resolution=1),
    }
    out = {}
    for name, load in loaders.items():
        with warnings.catch_warnings():  # the brain mask is binary; linear gives partial volume on purpose
            warnings.simplefilter("ignore", UserWarning)
            img = image.resample_img(load(), target_affine=affine, target_shape=shape, interpolation="linear",
                                     force_resample=True, copy_header=True)
            out[name] = np.clip(np.asarray(img.get_fdata(), dtype=np.float32), 0, None)
    mask = out["mask"] > 0.5
    t1max = out["t1"].max()
    out["t1"] = out["t1"] / (t1max if t1max > 0 else 1.0)
    gm, wm = out["gm"] * mask, out["wm"] * mask
    total = gm + wm
    scale = np.where(total > 1, 1 / np.maximum(total, 1e-6), 1.0)
    gm, wm = gm * scale, wm * scale
    out.update(gm=gm.astype(np.float32), wm=wm.astype(np.float32),
               csf=(mask * (1 - gm - wm)).astype(np.float32), mask=mask.astype(np.float32))
    for v in out.values():
        v.setflags(write=False)
    return out


def load_mni_crop(kind: str = "t1", spacing_mm: float = 1.0) -> np.ndarray:
    """One map of :func:`mni_maps` as a new writable array (``mask`` as uint8 0/1).

    Args:
        kind: ``t1`` (skull-stripped T1 template scaled to [0, 1]), ``gm``, ``wm``, ``csf``
            (probabilities) or ``mask`` (brain mask).
        spacing_mm: isotropic voxel size (mm).
    """
    if kind not in MAP_KINDS:
        raise ConfigError(f"unknown MNI map {kind!r}; expected one of {', '.join(MAP_KINDS)}")
    arr = mni_maps(_spacing(spacing_mm))[kind]
    return arr.astype(np.uint8) if kind == "mask" else arr.copy()


def load_mni_crop_image(kind: str = "t1", spacing_mm: float = 1.0):
    """:func:`load_mni_crop` as a ``nibabel.Nifti1Image`` on :func:`mni_crop_affine` (units mm)."""
    import nibabel as nib

    img = nib.Nifti1Image(load_mni_crop(kind, spacing_mm), mni_crop_affine(spacing_mm))
    img.header.set_xyzt_units("mm")
    return img
