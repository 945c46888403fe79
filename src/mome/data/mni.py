"""The MNI152 crop every mome image lives in: 160 x 196 x 160 voxels at 1 mm (the paper's input size).

The reference is nilearn's MNI152 2009 template at 1 mm (shipped inside its wheel, works offline):
197 x 233 x 189 voxels, RAS, affine ``diag(1, 1, 1)`` with origin (-98, -134, -72) mm. Its brain mask
spans voxels x 26..170, y 27..207, z 0..154 (145 x 181 x 155). The crop box is centred on that brain in
x and y and starts at the bottom slice in z (the mask already touches z = 0)::

    MNI_CROP_OFFSET = (18, 19, 0)  voxels into the template  ->  x 18..177, y 19..214, z 0..159
    first voxel centre (world, mm) = (-80, -115, -72);  field of view x -80.5..79.5, y -115.5..80.5,
    z -72.5..87.5 mm

Every brain-mask voxel of the template is inside the box (checked in tests). Coarser geometries
(e.g. the synthetic ``cpu`` preset at 2 mm) keep the same field of view: the voxel grid is
``MNI_CROP_SHAPE / spacing`` and its corner stays at the same world position.
"""

from __future__ import annotations

import functools

import numpy as np

from mome.errors import ConfigError

MNI_CROP_SHAPE: tuple[int, int, int] = (160, 196, 160)
"""Shape of the MNI crop at 1 mm (voxels, x y z, RAS)."""

MNI_CROP_OFFSET: tuple[int, int, int] = (18, 19, 0)
"""Index of the crop's first voxel in nilearn's 197 x 233 x 189 MNI152 1 mm template."""

MNI_TEMPLATE_SHAPE: tuple[int, int, int] = (197, 233, 189)
MNI_TEMPLATE_ORIGIN_MM: tuple[float, float, float] = (-98.0, -134.0, -72.0)

TEMPLATE_KINDS = ("t1", "brain_mask", "gm", "wm", "csf")


def _check_spacing(spacing_mm: float) -> float:
    try:
        s = float(spacing_mm)
    except (TypeError, ValueError):
        raise ConfigError(f"spacing {spacing_mm!r} is not a number (mm)") from None
    if not np.isfinite(s) or s <= 0:
        raise ConfigError(f"spacing must be a positive number of mm, got {spacing_mm!r}")
    for n in MNI_CROP_SHAPE:
        if abs(n / s - round(n / s)) > 1e-6:
            raise ConfigError(f"spacing {s} mm does not divide the MNI crop field of view "
                              f"{MNI_CROP_SHAPE} mm into whole voxels; use e.g. 1, 2 or 4 mm")
    return s


def mni_crop_shape(spacing_mm: float = 1.0) -> tuple[int, int, int]:
    """Voxel grid of the MNI crop at an isotropic spacing (mm): ``MNI_CROP_SHAPE / spacing``.

    Raises:
        ConfigError: when the spacing does not divide 160 and 196 mm into whole voxels.
    """
    s = _check_spacing(spacing_mm)
    return tuple(int(round(n / s)) for n in MNI_CROP_SHAPE)  # type: ignore[return-value]


def mni_crop_affine(spacing_mm: float = 1.0) -> np.ndarray:
    """4x4 voxel-to-world (RAS, mm) affine of the MNI crop at an isotropic spacing.

    The field of view is the same for every spacing: the first voxel's outer corner sits at
    (-80.5, -115.5, -72.5) mm, so the first voxel centre is that corner plus ``spacing / 2``.
    """
    s = _check_spacing(spacing_mm)
    corner = np.array(MNI_TEMPLATE_ORIGIN_MM) + np.array(MNI_CROP_OFFSET) - 0.5
    aff = np.eye(4)
    aff[:3, :3] *= s
    aff[:3, 3] = corner + s / 2.0
    return aff


@functools.lru_cache(maxsize=8)
def _template_1mm(kind: str) -> np.ndarray:
    """One nilearn MNI152 1 mm map cropped to the box (float32, values in [0, 1])."""
    from nilearn import datasets

    if kind == "csf":
        # nilearn ships no CSF map: approximate it as brain mask x (1 - GM - WM), as in design.md
        gm, wm, mask = (_template_1mm(k) for k in ("gm", "wm", "brain_mask"))
        return np.clip(mask * (1.0 - gm - wm), 0.0, 1.0).astype(np.float32)
    loader = {"t1": datasets.load_mni152_template, "brain_mask": datasets.load_mni152_brain_mask,
              "gm": datasets.load_mni152_gm_template, "wm": datasets.load_mni152_wm_template}[kind]
    img = loader(resolution=1)
    if img.shape != MNI_TEMPLATE_SHAPE or not np.allclose(img.affine[:3, 3], MNI_TEMPLATE_ORIGIN_MM):
        raise RuntimeError(f"nilearn's MNI152 {kind} map changed geometry: {img.shape}, {img.affine}")
    data = np.asarray(img.get_fdata(dtype=np.float32))
    x, y, z = MNI_CROP_OFFSET
    nx, ny, nz = MNI_CROP_SHAPE
    return np.ascontiguousarray(data[x:x + nx, y:y + ny, z:z + nz])


def load_mni_crop(kind: str = "t1", spacing_mm: float = 1.0) -> np.ndarray:
    """An MNI152 map on the crop grid :func:`mni_crop_affine` ``(spacing_mm)``.

    Args:
        kind: ``t1`` (skull-stripped T1 template, intensities in [0, 1]), ``brain_mask`` (0/1 uint8),
            ``gm``, ``wm`` or ``csf`` (tissue probabilities in [0, 1]; CSF = mask x (1 - GM - WM)).
        spacing_mm: isotropic voxel size (mm). Integer spacings average whole blocks of 1 mm voxels
            (exact partial volume, no aliasing); other spacings resample linearly with nilearn.

    Returns:
        A new array of shape :func:`mni_crop_shape` ``(spacing_mm)``: float32, or uint8 for the mask
        (a coarse voxel is brain when at least half of it is).
    """
    if kind not in TEMPLATE_KINDS:
        raise ConfigError(f"unknown MNI map {kind!r}; expected one of {', '.join(TEMPLATE_KINDS)}")
    s = _check_spacing(spacing_mm)
    data = _template_1mm(kind)
    if s == 1.0:
        out = data.copy()
    elif float(s).is_integer():
        k = int(s)
        shp = mni_crop_shape(s)
        out = data.reshape(shp[0], k, shp[1], k, shp[2], k).mean(axis=(1, 3, 5), dtype=np.float64)
        out = out.astype(np.float32)
    else:
        import nibabel as nib
        from nilearn.image import resample_img

        src = nib.Nifti1Image(data, mni_crop_affine(1.0))
        out = resample_img(src, target_affine=mni_crop_affine(s), target_shape=mni_crop_shape(s),
                           interpolation="linear", force_resample=True, copy_header=True).get_fdata()
        out = np.asarray(out, dtype=np.float32)
    if kind == "brain_mask":
        return (out >= 0.5).astype(np.uint8)
    return out


def load_mni_crop_image(kind: str = "t1", spacing_mm: float = 1.0):
    """:func:`load_mni_crop` wrapped as a ``nibabel.Nifti1Image`` with the crop affine (units mm)."""
    import nibabel as nib

    img = nib.Nifti1Image(load_mni_crop(kind, spacing_mm), mni_crop_affine(spacing_mm))
    img.header.set_xyzt_units("mm")
    return img
