"""Simulated clicks for the promptable SAM-Med3D: where a user would click next, from a reference mask.

A click is a voxel of the crop (array index order) with a label: 1 (positive) in a false-negative voxel
(lesion the prediction misses), 0 (negative) in a false-positive voxel. Two rules, as SAM-Med3D's code:

* ``random`` (its training, ``utils/click_method.py``): a voxel drawn uniformly from the error region
  (false negatives and false positives together).
* ``ritm`` (its evaluation, ``utils/infer_utils.py``, after RITM, Sofiiuk et al. 2022): the larger of the
  two error regions by depth (maximum Euclidean distance to its border, the crop's edge counting as
  border), and a voxel drawn among those deeper than half that maximum, i.e. near the centre of the
  largest error. The first click of a case (empty prediction) is thus near the centre of the lesion.

When the prediction has no error, both rules click the deepest voxel of the reference lesion (a
positive click that changes nothing); SAM-Med3D clicks the centre of the crop as a negative click,
which can only add an error. Clicks need a non-empty reference mask (:class:`~mome.errors.InputError`).
The distance transform is SciPy's (the released code uses the ``edt`` package; same distances).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage

from mome.errors import ConfigError, InputError

CLICK_RULES = ("random", "ritm")


def error_regions(prediction: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(false negatives, false positives) of two boolean (X, Y, Z) masks."""
    return truth & ~prediction, prediction & ~truth


def _depth(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of every voxel of ``mask`` to the nearest voxel outside it or outside the crop."""
    padded = np.pad(mask, 1)
    return ndimage.distance_transform_edt(padded)[1:-1, 1:-1, 1:-1]


def _pick(candidates: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    points = torch.argwhere(candidates)
    return points[int(rng.integers(len(points)))]


def next_click(prediction: torch.Tensor, truth: torch.Tensor, rule: str,
               rng: np.random.Generator) -> tuple[torch.Tensor, int]:
    """The next click ``(voxel (3,) int64, label 0/1)`` for a boolean prediction and reference (X, Y, Z)."""
    if rule not in CLICK_RULES:
        raise ConfigError(f"unknown click rule {rule!r}; use one of {', '.join(CLICK_RULES)}")
    prediction, truth = prediction.bool().cpu(), truth.bool().cpu()
    if not truth.any():
        raise InputError("the reference mask is empty: clicks are simulated from the lesion it marks, so an "
                         "empty reference gives nothing to click")
    fn, fp = error_regions(prediction, truth)
    if not (fn.any() or fp.any()):
        depth = _depth(truth.numpy())
        return torch.from_numpy(np.array(np.unravel_index(int(depth.argmax()), depth.shape))).long(), 1
    if rule == "random":
        point = _pick(fn | fp, rng)
        return point, int(fn[tuple(point)])
    depth_fn, depth_fp = _depth(fn.numpy()), _depth(fp.numpy())
    positive = depth_fn.max() > depth_fp.max()
    depth = depth_fn if positive else depth_fp
    point = _pick(torch.from_numpy(depth > depth.max() / 2.0), rng)
    return point, int(fn[tuple(point)])


@dataclass
class ClickSession:
    """The clicks given so far to one or more crops (one list per crop), as decoder inputs."""

    points: list[list[torch.Tensor]] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)

    def add(self, predictions: torch.Tensor, truths: torch.Tensor, rule: str, rng: np.random.Generator) -> None:
        """One new click per crop from (B, X, Y, Z) boolean predictions and references."""
        if not self.points:
            self.points = [[] for _ in range(len(truths))]
            self.labels = [[] for _ in range(len(truths))]
        for b in range(len(truths)):
            point, label = next_click(predictions[b], truths[b], rule, rng)
            self.points[b].append(point)
            self.labels[b].append(label)

    def tensors(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, 3) float coordinates and (B, N) int64 labels of every click so far."""
        points = torch.stack([torch.stack(p) for p in self.points]).float().to(device)
        labels = torch.tensor(self.labels, dtype=torch.int64, device=device)
        return points, labels


def dice(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    inter = float((prediction & truth).sum())
    total = float(prediction.sum()) + float(truth.sum())
    return 1.0 if total == 0 else 2.0 * inter / total


@torch.inference_mode()
def interactive_segmentation(model, crop: torch.Tensor, truth: torch.Tensor, n_clicks: int, rule: str = "ritm",
                             seed: int = 0) -> tuple[list[torch.Tensor], ClickSession]:
    """Segment one crop with ``n_clicks`` simulated clicks, as SAM-Med3D's evaluation does.

    Each round adds one click from the current prediction's errors and decodes with every click so far
    and the previous low-resolution logits.

    Args:
        model: a :class:`~mome.model.baselines.SAMMed3D`.
        crop: (S, S, S) normalised image crop.
        truth: (S, S, S) boolean reference mask on the crop (must hold lesion).
        n_clicks: number of clicks (>= 1).
        rule: click rule (``ritm`` for evaluation).
        seed: seeds the choice among equally good voxels.

    Returns:
        The (S, S, S) lesion probabilities after each click, and the clicks.
    """
    from mome.model.baselines.sam_med3d import upsample

    if n_clicks < 1:
        raise ConfigError(f"the number of clicks must be at least 1, got {n_clicks}")
    rng = np.random.default_rng(seed)
    device = next(model.parameters()).device
    size = model.config.img_size
    embedding = model.embed(crop.to(device, torch.float32)[None, None])
    truth = truth.bool().cpu()[None]
    low = torch.zeros((1, 1) + (model.config.low_res,) * 3, device=device)
    prediction = torch.zeros_like(truth)
    session = ClickSession()
    probabilities = []
    for _ in range(n_clicks):
        session.add(prediction, truth, rule, rng)
        points, labels = session.tensors(device)
        low, _ = model.decode(embedding, points, labels, low)
        prob = torch.sigmoid(upsample(low, size))[0, 0].float().cpu()
        probabilities.append(prob)
        prediction = (prob > 0.5)[None]
    return probabilities, session
