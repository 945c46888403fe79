"""Voxel-wise uncertainty of a MoME prediction: expert disagreement (and mirror disagreement with TTA).

* **Expert spread**: at every voxel, the standard deviation of the experts' lesion probabilities
  ``p_e = 1 - softmax(logits_e)[background]``, weighted by the gate: ``w_e = |g_e|`` averaged over the
  lesion class(es) (the released gate's raw ``identity`` weights can be negative; their size is what
  the fusion gives each expert). ``u = sqrt(sum_e w_e (p_e - pbar)^2 / sum_e w_e)``, ``pbar`` the weighted mean.
  It is large where the experts the gate relies on disagree, zero where they agree.
* **Mirror spread** (``--tta``): the standard deviation of the fused lesion probability over the 8
  mirrored passes. With both, the map is ``sqrt(mean expert variance + mirror variance)`` (the law of
  total variance over passes, taking the experts' spread around their own mean; so up to sqrt(0.5), not 0.5).

Per-lesion and per-scan summaries (:func:`uncertainty_stats`) are means of the map over each predicted
lesion and over all predicted lesion voxels. What they are worth is measured (``benchmarks/uncertainty.py``,
README): AUROC of the map for wrong voxels and the correlation of the per-scan value with Dice.
"""

from __future__ import annotations

import numpy as np
import torch


def _lesion_probability(logits: torch.Tensor) -> torch.Tensor:
    """(B, C, ...) logits -> (B, 1, ...) probability of any lesion class."""
    return 1.0 - torch.softmax(logits.float(), dim=1)[:, :1]


def add_expert_moments(moments, logits: torch.Tensor, gate: torch.Tensor):
    """Accumulate (sum w, sum w p, sum w p^2) of one expert: ``logits`` (B, C, ...), ``gate`` (B, C, ...)."""
    p = _lesion_probability(logits)
    w = gate[:, 1:].abs().mean(dim=1, keepdim=True).float()
    terms = (w, w * p, w * p * p)
    return terms if moments is None else tuple(a + b for a, b in zip(moments, terms))


def spread_from_moments(moments) -> torch.Tensor:
    """The weighted standard deviation (B, 1, ...) from :func:`add_expert_moments` sums."""
    sw, swp, swp2 = moments
    sw = sw.clamp_min(1e-8)
    mean = swp / sw
    return (swp2 / sw - mean * mean).clamp_min(0.0).sqrt()


def expert_spread(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The gate-weighted spread of every expert's lesion probability for a MoME on (B, 1, X, Y, Z)."""
    from mome.inference.acceleration import staged_mome_forward

    return staged_mome_forward(model, x, spread=True).spread


def combine_with_mirrors(expert_variances: list[torch.Tensor], probabilities: list[torch.Tensor]) -> torch.Tensor:
    """``sqrt(mean expert variance + variance of the mirrored passes' probabilities)`` (all (B, 1, ...))."""
    mean_var = torch.stack(expert_variances).mean(dim=0)
    return (mean_var + torch.stack(probabilities).var(dim=0, unbiased=False)).clamp_min(0.0).sqrt()


def uncertainty_stats(uncertainty: np.ndarray, mask: np.ndarray) -> dict:
    """Per-scan (mean over the predicted lesion) and per-lesion (largest lesion first) mean uncertainty."""
    from scipy import ndimage

    lesion = np.asarray(mask) > 0
    u = np.asarray(uncertainty, dtype=np.float64)
    labels, count = ndimage.label(lesion, structure=np.ones((3, 3, 3), bool))
    per_lesion = []
    if count:
        sizes = np.bincount(labels.ravel())[1:]
        sums = np.bincount(labels.ravel(), weights=u.ravel())[1:]
        per_lesion = [float(sums[i] / sizes[i]) for i in np.argsort(-sizes, kind="stable")]
    return {"uncertainty_scan": float(u[lesion].mean()) if lesion.any() else None,
            "uncertainty_lesions": per_lesion,
            "uncertainty_brain_max": float(u.max()) if u.size else None}
