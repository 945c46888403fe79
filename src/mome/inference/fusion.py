"""Late fusion of one subject's sequences: per-sequence lesion probabilities -> one probability map.

Every sequence is segmented on its own by the same model (MoME needs no modality), then the lesion
probabilities are combined voxel by voxel. Rules:

* ``mean``: the plain average.
* ``weighted``: an average weighted per sequence by the reliability of its modality (e.g. the model's
  Dice per modality measured on training images: a T1, where lesions are faint, counts less than a
  FLAIR). The modality is the declared one (file name or BIDS suffix), else the gate's implicit one.
* ``max``: the voxel-wise maximum (a lesion seen on any sequence).
* ``learned``: logistic stacking of the sequences' lesion logits with per-modality weights fitted on
  training subjects (:mod:`mome.inference.learned_fusion`; only for models that carry the fit).

Which rule is the default is decided by measurement (``benchmarks/fusion.py``, README).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mome.errors import ConfigError

FUSION_RULES = ("mean", "weighted", "max", "learned")

# file-name tokens of each modality: BIDS suffixes (T1w + a ce- entity = T1ce) and mome's own names
_TOKENS = [("T1ce", re.compile(r"(^|[_\-.])(t1ce|t1c|t1gd|ce-[a-z0-9]+.*_t1w)([_\-.]|$)")),
           ("FLAIR", re.compile(r"(^|[_\-.])flair([_\-.]|$)")),
           ("DWI", re.compile(r"(^|[_\-.])(dwi|adc|trace)([_\-.]|$)")),
           ("T2", re.compile(r"(^|[_\-.])t2w?([_\-.]|$)")),
           ("T1", re.compile(r"(^|[_\-.])t1w?([_\-.]|$)"))]


def declared_modality(path: str | Path) -> str | None:
    """The modality a file name declares (``sub-01_ce-gad_T1w`` -> T1ce, ``x_FLAIR.nii.gz`` -> FLAIR), or None."""
    name = Path(path).name.lower()
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    for modality, pattern in _TOKENS:
        if pattern.search(name):
            return modality
    return None


def fuse(probabilities: Sequence[np.ndarray], rule: str = "mean", weights: Sequence[float] | None = None) -> np.ndarray:
    """Fuse (X, Y, Z) lesion probabilities of one subject's sequences (same grid) into one map.

    Args:
        probabilities: one map per sequence.
        rule: one of :data:`FUSION_RULES`.
        weights: one non-negative weight per sequence for ``weighted`` (not all zero).
    """
    if rule not in FUSION_RULES:
        raise ConfigError(f"unknown fusion rule {rule!r}; use one of {', '.join(FUSION_RULES)}")
    if rule == "learned":
        raise ConfigError("the learned fusion needs the sequences' modalities: mome.inference.learned_fusion.apply")
    if not probabilities:
        raise ConfigError("nothing to fuse: no sequence")
    stack = np.stack([np.asarray(p, dtype=np.float32) for p in probabilities])
    if rule == "max":
        return stack.max(axis=0)
    if rule == "mean":
        return stack.mean(axis=0)
    return np.tensordot(_normalised(weights, len(probabilities)), stack, axes=1).astype(np.float32)


def _normalised(weights: Sequence[float] | None, n: int) -> np.ndarray:
    """The weighted fusion's weights, checked (one per sequence, non-negative, not all zero), summing to 1."""
    if weights is None or len(weights) != n:
        raise ConfigError(f"the weighted fusion needs one weight per sequence ({n})")
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"fusion weights must be non-negative and not all zero, got {list(weights)}")
    return w / w.sum()


def fused_spread(probabilities: Sequence[np.ndarray], spreads: Sequence[np.ndarray], rule: str = "mean",
                 weights: Sequence[float] | None = None) -> np.ndarray:
    """The uncertainty of a fused map: the standard deviation of the mixture of the sequences' predictions,
    ``sqrt(sum_i w_i (u_i^2 + (p_i - pbar)^2))`` with ``pbar = sum_i w_i p_i`` (law of total variance: each
    sequence's own expert spread ``u_i`` plus the disagreement between sequences). ``w`` are the normalised
    fusion weights (``mean``, ``max`` and ``learned``: equal weights), so a sequence the fusion ignores adds nothing."""
    stack = np.stack([np.asarray(p, dtype=np.float64) for p in probabilities])
    u = np.stack([np.asarray(x, dtype=np.float64) for x in spreads])
    n = len(probabilities)
    w = _normalised(weights, n) if rule == "weighted" else np.full(n, 1.0 / n)
    w = w.reshape(-1, *([1] * (stack.ndim - 1)))
    mean = (w * stack).sum(axis=0)
    return np.sqrt((w * (u * u + (stack - mean) ** 2)).sum(axis=0)).astype(np.float32)


def modality_weights(modalities: Sequence[str | None], table: dict[str, float]) -> list[float]:
    """Per-sequence weights from a per-modality reliability table (unknown modality: the table's mean)."""
    if not table:
        raise ConfigError("no per-modality reliability table for the weighted fusion")
    default = float(np.mean(list(table.values())))
    return [float(table.get(m, default)) if m else default for m in modalities]
