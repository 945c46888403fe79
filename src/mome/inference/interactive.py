"""Interactive (promptable) prediction: SAM-Med3D segments an image from clicks simulated on a reference mask.

This is not automatic segmentation: the clicks come from the reference (the answer), as in the paper's
and SAM-Med3D's evaluation, so its Dice measures how well the model follows N corrections, and it is not
comparable as such with MoME's or nnU-Net's. Steps, as SAM-Med3D's ``medim_val_*`` / ``utils/infer_utils``:

1. the image is z-scored over the brain (mome's normalisation, the one the model was trained with),
   reoriented to RAS and resampled to the model's spacing; the reference likewise (nearest neighbour);
2. a cubic crop of the model's input size is centred on the reference lesion's bounding box (torchio's
   ``CropOrPad(mask_name=...)`` rule), zero-padded where it leaves the volume;
3. ``n_clicks`` rounds of :func:`mome.inference.clicks.interactive_segmentation` (RITM rule);
4. the last round's probabilities are placed in the volume (zero outside the crop), resampled back to the
   image's grid and reoriented back.

The Dice after every click (against the whole reference, on the model's grid) is reported in
``Prediction.info["click_dice"]``; the mask written is the last click's (what a user has after N clicks),
and ``best_click_dice`` is the best over the clicks (an oracle choice that needs the reference).
"""

from __future__ import annotations

import numpy as np
import torch

from mome.data.intensity import zscore_in_brain
from mome.errors import ConfigError, InputError
from mome.inference.geometry import Reorientation, needs_resampling, resample, resampled_shape, voxel_spacing
from mome.inference.predictor import Prediction, resolve_device

DEFAULT_CLICKS = 10
CLICK_RULE = "ritm"


def is_interactive(record: dict | None) -> bool:
    """Whether a model folder's record is a promptable (click-driven) model."""
    if not record:
        return False
    return record.get("config", {}).get("kind") == "SAMMed3DConfig" or bool(record.get("interactive"))


def load_reference(reference, image) -> np.ndarray:
    """A reference lesion mask (path, nibabel image or array) checked against ``image``: boolean, same grid."""
    import os

    from mome.utils.nifti import load_nifti

    if isinstance(reference, (str, os.PathLike)):
        ref_img, data = load_nifti(reference, allow_empty=True, what="reference mask")
        if not np.allclose(ref_img.affine, image.affine, atol=1e-3):
            raise InputError(f"the reference mask {reference} is not on the image's grid (different affine); "
                             "resample it to the image first")
        where = f"the reference mask {reference}"
    else:
        data, where = np.asarray(getattr(reference, "dataobj", reference)), "the reference mask"
    if data.shape != tuple(image.shape[:3]):
        raise InputError(f"{where} has shape {data.shape}, the image {tuple(image.shape[:3])}; they must share "
                         "one grid")
    if not np.all(np.isfinite(data)):
        raise InputError(f"{where} has NaN or infinite voxels")
    mask = data > 0
    if not mask.any():
        raise InputError(f"{where} is empty: the simulated clicks need a lesion to click on")
    return mask


def crop_box(reference: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, stop) of the ``size``^3 crop centred on the bounding box of ``reference`` (may leave the volume)."""
    where = np.argwhere(reference)
    centre = (where.min(axis=0) + where.max(axis=0) + 1) // 2
    start = centre - size // 2
    return start, start + size


def take_crop(volume: np.ndarray, start: np.ndarray, size: int) -> np.ndarray:
    """The ``size``^3 block of ``volume`` from ``start``, zero where it leaves the volume."""
    out = np.zeros((size,) * 3, dtype=volume.dtype)
    src = [slice(max(s, 0), min(s + size, n)) for s, n in zip(start, volume.shape)]
    dst = [slice(sl.start - s, sl.stop - s) for sl, s in zip(src, start)]
    out[tuple(dst)] = volume[tuple(src)]
    return out


def put_crop(block: np.ndarray, start: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``block`` placed at ``start`` in a zero volume of ``shape`` (the part inside it)."""
    out = np.zeros(shape, dtype=block.dtype)
    size = block.shape[0]
    dst = [slice(max(s, 0), min(s + size, n)) for s, n in zip(start, shape)]
    src = [slice(sl.start - s, sl.stop - s) for sl, s in zip(dst, start)]
    out[tuple(dst)] = block[tuple(src)]
    return out


class InteractivePredictor:
    """Segments images with a SAM-Med3D model and clicks simulated from a reference mask.

    Args:
        model: a :class:`~mome.model.baselines.SAMMed3D`.
        record: its model folder's ``config.json`` (``spacing_mm``).
        n_clicks: clicks per image (the paper: 10).
        seed: seeds the choice among equally good click voxels (deterministic under a seed).
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    def __init__(self, model, record: dict | None = None, n_clicks: int = DEFAULT_CLICKS, seed: int = 0,
                 device: str = "auto"):
        if isinstance(n_clicks, bool) or not isinstance(n_clicks, int) or not 1 <= n_clicks <= 100:
            raise ConfigError(f"--clicks must be an integer from 1 to 100, got {n_clicks!r}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.record = record or {}
        spacing = self.record.get("spacing_mm")
        self.spacing_mm = tuple(float(s) for s in spacing) if spacing else None
        self.n_clicks = n_clicks
        self.seed = int(seed)

    def predict_image(self, image, reference: np.ndarray) -> Prediction:
        """Predict a nibabel image from clicks simulated on ``reference`` (same voxel grid, non-zero = lesion)."""
        data = np.asarray(image.dataobj, dtype=np.float32)
        reference = np.asarray(reference)
        if reference.shape != data.shape:
            raise InputError(f"the reference mask has shape {reference.shape}, the image {data.shape}; clicks are "
                             "simulated on the image's own grid")
        reference = reference > 0
        if not reference.any():
            raise InputError("the reference mask is empty: the simulated clicks need a lesion to click on")
        reor = Reorientation.from_affine(image.affine)
        spacing = reor.spacing_to_ras(voxel_spacing(image.affine))
        volume = zscore_in_brain(reor.to_ras(data))
        ref = reor.to_ras(reference)
        shape = volume.shape
        resampled = needs_resampling(spacing, self.spacing_mm)
        if resampled:
            target = resampled_shape(shape, spacing, self.spacing_mm)
            volume = resample(torch.from_numpy(volume)[None], target)[0].numpy()
            ref = resample(torch.from_numpy(ref.astype(np.float32))[None], target)[0].numpy() > 0.5
            if not ref.any():
                raise InputError(f"the reference lesion vanishes at the model's {self.spacing_mm} mm spacing")
        probabilities, info = self._segment(volume, ref)
        if resampled:
            probabilities = resample(torch.from_numpy(probabilities)[None], shape)[0].numpy()
        lesion = np.clip(reor.from_ras(probabilities), 0.0, 1.0).astype(np.float32)
        info.update(input_spacing_mm=list(spacing), resampled=resampled, reoriented=not reor.is_identity,
                    device=str(self.device))
        return Prediction(np.stack([1.0 - lesion, lesion]).astype(np.float32), info=info)

    def _segment(self, volume: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, dict]:
        from mome.inference.clicks import dice, interactive_segmentation

        size = self.model.config.img_size
        start, _ = crop_box(reference, size)
        crop = torch.from_numpy(take_crop(volume, start, size))
        truth = torch.from_numpy(take_crop(reference, start, size))
        per_click, session = interactive_segmentation(self.model, crop, truth, self.n_clicks, CLICK_RULE, self.seed)
        full_ref = torch.from_numpy(reference)
        dices = [round(dice(torch.from_numpy(put_crop(p.numpy() > 0.5, start, reference.shape)), full_ref), 6)
                 for p in per_click]
        info = {"interactive": True, "clicks": self.n_clicks, "click_rule": CLICK_RULE, "seed": self.seed,
                "crop_start": [int(s) for s in start], "crop_size": size,
                "click_points": [[int(v) for v in p] for p in session.points[0]],
                "click_labels": [int(v) for v in session.labels[0]],
                "click_dice": dices, "last_click_dice": dices[-1],
                "best_click_dice": max(dices), "best_click": len(dices) - int(np.argmax(dices[::-1])),  # last of ties
                "model_spacing_mm": None if self.spacing_mm is None else list(self.spacing_mm)}
        return put_crop(per_click[-1].numpy(), start, reference.shape), info
