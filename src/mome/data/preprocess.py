"""Preprocessing of a real scan into mome's MNI crop, and the inverse mapping of masks to the scan.

``preprocess`` does, as the paper does before training and inference (Sec. 3.1):

1. reorient the scan to RAS (voxel order only; the physical geometry is unchanged);
2. register it to the MNI152 1 mm template, rigid then affine (:mod:`mome.data.registration`);
3. resample it (linear) onto the 160 x 196 x 160 crop of :mod:`mome.data.mni`;
4. brain-mask it with the template brain mask united with the lesion label when one is given
   (no subject-specific skull stripping: the template mask is the paper's rule);
5. write into ``out_dir``: ``image.nii.gz`` (float32, masked), ``brain_mask.nii.gz`` and
   ``label.nii.gz`` (uint8 0/1), ``native_to_mni.mat`` (ANTs affine) and ``preprocess.json``
   (native grid, registration settings and quality, versions).

``to_native`` maps a mask (or probability map) on the MNI crop back onto the scan's own voxel grid:
same shape and affine as the input file, ready to overlay on it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mome.data.mni import (AUTHORS_BOX_ORIGIN_MM, MNI_BOX_ORIGIN_MM, MNI_CROP_SHAPE, authors_crop_affine,
                           mni_crop_affine, template_mask_on)
from mome.data.registration import RegistrationSettings, register_to_mni, warp_to_mni, warp_to_native
from mome.data.validate import format_values
from mome.errors import InputError, OutputExistsError
from mome.utils.atomic import atomic_path, check_location, check_writable, write_text_atomic
from mome.utils.nifti import load_nifti, save_nifti
from mome.utils.provenance import provenance

IMAGE, BRAIN_MASK, LABEL, TRANSFORM, RECORD = (
    "image.nii.gz", "brain_mask.nii.gz", "label.nii.gz", "native_to_mni.mat", "preprocess.json")
AFFINE_ATOL = 1e-3
#: ``mome``: mome's crop, every scan multiplied by the template brain mask (mome's own models);
#: ``authors``: the authors' MoME recipe (official weights): their crop box, and the brain mask applied
#: only to skull-on scans (``Codes_prepro/skull_stripping.py``), nnU-Net normalising afterwards.
PROFILES = ("mome", "authors")
SKULL_STRIP = ("auto", "yes", "no")
#: a registered scan is skull-on when more than this fraction of its signal lies over 5 mm outside the
#: template brain mask (skull-stripped scans: ~0; the skull-on TCGA scans in ../shared/data: far more)
SKULL_ON_FRACTION = 0.05


@dataclass
class PreprocessResult:
    """The files of a preprocessed scan and the native geometry needed to map masks back.

    Attributes:
        out_dir: the output folder.
        image_path: MNI-crop image (160 x 196 x 160, 1 mm, RAS, brain-masked, float32).
        brain_mask_path: template brain mask, united with the label when one was given (uint8).
        label_path: the label on the MNI crop (uint8 0/1), or None.
        transform_path: ANTs affine native -> MNI (forward: resamples native images onto the crop).
        native_shape: voxel shape of the original scan.
        native_affine: its voxel-to-world affine (RAS, mm), exactly as nibabel read it.
        source: the original scan's path.
        ncc_before, ncc_after: NCC with the template in its brain mask, header placement vs registered.
        mi_before, mi_after: the same as mutual information (contrast-independent; None in records written
            before mome recorded it).
        record_path: ``preprocess.json``.
    """

    out_dir: Path
    image_path: Path
    brain_mask_path: Path
    label_path: Path | None
    transform_path: Path
    native_shape: tuple[int, int, int]
    native_affine: np.ndarray
    source: Path
    ncc_before: float
    ncc_after: float
    record_path: Path
    grid_shape: tuple[int, int, int] = MNI_CROP_SHAPE
    grid_affine: np.ndarray = None  # type: ignore[assignment]
    mi_before: float | None = None
    mi_after: float | None = None

    def __post_init__(self) -> None:
        if self.grid_affine is None:
            self.grid_affine = mni_crop_affine(1.0)

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> PreprocessResult:
        """Read a result back from its folder's ``preprocess.json``.

        Raises:
            InputError: the folder has no readable record or misses one of its files.
        """
        out_dir = Path(out_dir)
        rec_path = out_dir / RECORD
        if not rec_path.is_file():
            raise InputError(f"{out_dir} is not a preprocessing folder: {rec_path} is missing "
                             "(run `mome preprocess -i scan.nii.gz -o DIR` first)")
        try:
            rec = json.loads(rec_path.read_text())
            native, files, reg, mni = rec["native"], rec["files"], rec["registration"], rec["mni"]
            result = cls(out_dir, out_dir / files["image"], out_dir / files["brain_mask"],
                         None if files.get("label") is None else out_dir / files["label"],
                         out_dir / files["transform"], tuple(native["shape"]), np.array(native["affine"], float),
                         Path(native["source"]), float(reg["ncc_before"]), float(reg["ncc_after"]), rec_path,
                         tuple(mni["shape"]), np.array(mni["affine"], float),
                         _optional_float(reg.get("mi_before")), _optional_float(reg.get("mi_after")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{rec_path} is not a valid preprocessing record: {exc}") from exc
        if not result.transform_path.is_file():
            raise InputError(f"{result.transform_path} is missing; re-run mome preprocess")
        return result


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExistsError(f"output {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise OutputExistsError(f"output folder {out_dir} is not empty; pass --overwrite to replace it")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        check_writable(out_dir, overwrite=True, kind="folder")  # --overwrite replaces only mome's folders
    check_location(out_dir)


def _load_inputs(image_path: Path, label_path: Path | None):
    import nibabel as nib

    img, _ = load_nifti(image_path, what="image")
    img = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine, img.header)
    label = None
    if label_path is not None:
        lab, arr = load_nifti(label_path, allow_empty=True, what="label")
        if lab.shape != img.shape:
            raise InputError(f"label {label_path} has shape {lab.shape} but image {image_path} has {img.shape}; "
                             "the label must be on the image's voxel grid")
        diff = float(np.abs(lab.affine - img.affine).max())
        if diff > AFFINE_ATOL:
            raise InputError(f"label {label_path} affine differs from image {image_path} by up to {diff:.4g}; "
                             "the label must be on the image's voxel grid")
        vals = np.unique(arr)
        if not np.all(np.isin(vals, (0, 1))):
            raise InputError(f"label {label_path} is not binary (values {format_values(vals)}); give a 0/1 "
                             "lesion mask")
        label = nib.Nifti1Image(arr.astype(np.uint8), img.affine, img.header)
    return img, label


def preprocess(image_path: str | os.PathLike, out_dir: str | os.PathLike, label_path: str | os.PathLike | None = None,
               overwrite: bool = False, settings: RegistrationSettings | None = None,
               registration: str = "auto", profile: str = "mome", skull_strip: str = "auto") -> PreprocessResult:
    """Register a scan to MNI152, crop it to 160 x 196 x 160 at 1 mm and brain-mask it.

    Args:
        image_path: the native scan (NIfTI, any orientation, skull on or off).
        out_dir: output folder (created; must be empty or absent unless ``overwrite``).
        label_path: optional 0/1 lesion mask on the scan's grid; it is carried to MNI and united with
            the brain mask.
        overwrite: replace an existing output folder.
        settings: registration parameters (default :class:`RegistrationSettings`; ``FAST`` for previews).
        registration: ``auto`` (a scan on a known MNI152 1 mm or 2 mm grid is not registered again),
            ``always`` or ``never`` (the scan is taken as registered already; see
            :func:`mome.data.registration.register_to_mni`).
        profile: ``mome`` (mome's crop; the scan is multiplied by the template brain mask) or ``authors``
            (the official weights' inputs: the authors' crop ``[20:180, 20:216, 0:160]`` of the MNI152
            2009 grid, the brain mask applied only to skull-on scans, see ``skull_strip``).
        skull_strip: with ``authors``: ``auto`` (mask only scans found skull-on, as the authors masked only
            their skull-on datasets), ``yes`` or ``no``.

    Returns:
        The written files and the native geometry (:class:`PreprocessResult`).

    Raises:
        InputError: unreadable scan or label, label not 0/1 or not on the scan's grid.
        OutputExistsError: ``out_dir`` is not empty and ``overwrite`` is False. Nothing is written on error.
    """
    import nibabel as nib

    if profile not in PROFILES:
        raise InputError(f"unknown preprocessing profile {profile!r}; use one of {', '.join(PROFILES)}")
    if skull_strip not in SKULL_STRIP:
        raise InputError(f"skull_strip {skull_strip!r}; use one of {', '.join(SKULL_STRIP)}")
    image_path, out_dir = Path(image_path), Path(out_dir)
    label_path = None if label_path is None else Path(label_path)
    settings = settings or RegistrationSettings()
    _check_out_dir(out_dir, overwrite)
    img, label = _load_inputs(image_path, label_path)
    canon = nib.as_closest_canonical(img)
    canon_arr = np.asarray(canon.dataobj, dtype=np.float32)

    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()  # an empty folder the user made: replaced atomically below
    t0 = time.perf_counter()
    with atomic_path(out_dir, overwrite=overwrite) as tmp:
        tmp.mkdir(parents=True)
        reg = register_to_mni(canon_arr, canon.affine, tmp / "ants", settings, mode=registration)
        shutil.copyfile(reg.transform, tmp / TRANSFORM)
        shutil.rmtree(tmp / "ants")
        transform = tmp / TRANSFORM
        crop_aff = authors_crop_affine() if profile == "authors" else mni_crop_affine(1.0)
        grid = (MNI_CROP_SHAPE, crop_aff)
        template_brain = template_mask_on(MNI_CROP_SHAPE, crop_aff)
        brain = template_brain.copy()
        label_mni = None
        if label is not None:
            canon_lab = nib.as_closest_canonical(label)
            label_mni = warp_to_mni(np.asarray(canon_lab.dataobj, np.float32), canon_lab.affine, transform,
                                    "nearest", grid=grid) > 0.5
            brain |= label_mni
            save_nifti(label_mni.astype(np.uint8), crop_aff, tmp / LABEL)
        warped = warp_to_mni(canon_arr, canon.affine, transform, "linear", grid=grid)
        skull_on = skull_on_fraction(warped, template_brain)
        if profile == "mome":
            masked, how = True, "MNI152 template brain mask" + (" united with the label" if label is not None else "")
        else:
            masked = skull_strip == "yes" or (skull_strip == "auto" and skull_on > SKULL_ON_FRACTION)
            how = (f"skull_strip={skull_strip}: " + ("template brain mask applied" if masked else "not masked")
                   + f" ({skull_on:.1%} of the signal lies over 5 mm outside the template brain)")
        save_nifti((warped * brain if masked else warped).astype(np.float32), crop_aff, tmp / IMAGE)
        save_nifti(brain.astype(np.uint8), crop_aff, tmp / BRAIN_MASK)
        zooms = np.linalg.norm(img.affine[:3, :3], axis=0)
        record = provenance(
            seed=settings.random_seed,
            profile=profile,
            native={"source": str(image_path.resolve()), "shape": list(img.shape),
                    "affine": img.affine.tolist(), "orientation": "".join(nib.aff2axcodes(img.affine)),
                    "voxel_size_mm": zooms.tolist(),
                    "label": None if label_path is None else str(label_path.resolve()),
                    "label_volume_ml": None if label is None else
                    float(np.asarray(label.dataobj).sum() * np.prod(zooms) / 1000)},
            mni={"shape": list(MNI_CROP_SHAPE), "affine": crop_aff.tolist(),
                 "box_origin_mm": AUTHORS_BOX_ORIGIN_MM if profile == "authors" else MNI_BOX_ORIGIN_MM,
                 "box": "the authors' crop [20:180, 20:216, 0:160] of the 197x233x189 MNI152 2009 grid"
                        if profile == "authors" else "mome's crop (template voxels [18:178, 18:214, -2:158])",
                 "template": "nilearn MNI152 2009 1 mm (skull-stripped)",
                 "label_volume_ml": None if label_mni is None else float(label_mni.sum() / 1000)},
            registration={"recipe": (f"none: the scan is already in MNI152 space ({reg.skipped}); identity "
                                     "transform" if reg.skipped else
                                     f"rigid, {settings.rigid_refinements} rigid pass(es) on the template-masked "
                                     f"scan, {settings.final_transform} on the template-masked scan (antspyx)"),
                          "mode": registration, "skipped": reg.skipped,
                          "settings": None if reg.skipped else settings.to_dict(), "ncc_before": reg.ncc_before,
                          "ncc_after": reg.ncc_after, "mi_before": reg.mi_before, "mi_after": reg.mi_after,
                          "seconds": reg.seconds, "attempts": reg.attempts},
            brain_mask=how, skull_on_fraction=skull_on, masked=bool(masked),
            files={"image": IMAGE, "brain_mask": BRAIN_MASK, "label": None if label is None else LABEL,
                   "transform": TRANSFORM},
            seconds=time.perf_counter() - t0)
        write_text_atomic(tmp / RECORD, json.dumps(record, indent=2))
    return PreprocessResult.load(out_dir)


def to_native(mask, preprocessed: PreprocessResult | str | os.PathLike, interpolation: str = "nearest",
              threshold: float | None = 0.5):
    """Map a mask or probability map from the MNI crop back onto the original scan's voxel grid.

    Args:
        mask: a NIfTI path or an array of shape 160 x 196 x 160 on :func:`mni_crop_affine` ``(1)``.
        preprocessed: the :class:`PreprocessResult` or its folder.
        interpolation: ``nearest`` (labels; keeps the dtype of integer/bool input) or ``linear``
            (probabilities; thresholded at ``threshold`` to a uint8 mask, or float32 when ``threshold``
            is None).
        threshold: a voxel is lesion when its interpolated probability is above it (``linear`` only).

    Returns:
        ``nibabel.Nifti1Image`` with exactly the original scan's shape and affine.

    Raises:
        InputError: a mask not on the MNI crop, an unknown interpolation, a broken preprocessing folder.
    """
    import nibabel as nib

    if interpolation not in ("nearest", "linear"):
        raise InputError(f"interpolation {interpolation!r}; expected 'nearest' or 'linear'")
    res = preprocessed if isinstance(preprocessed, PreprocessResult) else PreprocessResult.load(preprocessed)
    shape = tuple(res.grid_shape)
    if isinstance(mask, (str, os.PathLike)):
        img, _ = load_nifti(mask, allow_empty=True, what="mask")
        arr = np.asarray(img.dataobj)
        diff = float(np.abs(img.affine - res.grid_affine).max())
        if img.shape != shape or diff > AFFINE_ATOL:
            raise InputError(f"mask {mask} is not on mome's MNI crop (shape {img.shape}, expected {shape} with "
                             f"the affine of {res.image_path.name})")
    else:
        arr = np.asarray(mask)
        if arr.shape != shape:
            raise InputError(f"mask array has shape {arr.shape}; expected the MNI crop shape {shape}")
    if interpolation == "nearest":
        dtype = np.uint8 if arr.dtype == bool else arr.dtype
        out = warp_to_native(arr.astype(np.float32), res.transform_path, res.native_shape, res.native_affine,
                             "nearest", grid_affine=res.grid_affine)
        out = np.rint(out).astype(dtype) if np.issubdtype(dtype, np.integer) else out.astype(dtype)
    else:
        out = warp_to_native(arr.astype(np.float32), res.transform_path, res.native_shape, res.native_affine,
                             "linear", grid_affine=res.grid_affine)
        out = out.astype(np.float32) if threshold is None else (out > threshold).astype(np.uint8)
    native = nib.Nifti1Image(out, res.native_affine)
    native.header.set_xyzt_units("mm")
    native.set_qform(res.native_affine, code=1)
    native.set_sform(res.native_affine, code=1)
    return native


def skull_on_fraction(warped: np.ndarray, template_brain: np.ndarray) -> float:
    """Fraction of a registered scan's signal (above 5% of its 99th percentile) over 5 mm outside the brain."""
    from scipy import ndimage

    from mome.data.registration import signal_mask

    signal = signal_mask(warped)
    outside = ~ndimage.binary_dilation(template_brain, iterations=5)
    return float((signal & outside).sum() / max(int(signal.sum()), 1))


def _optional_float(value) -> float | None:
    return None if value is None else float(value)
