"""Losses: nnU-Net's Dice + cross-entropy with deep supervision, and MoME's curriculum loss (eq. 2).

* :class:`DiceCELoss` is MONAI's ``DiceCELoss`` configured as nnU-Net's ``DC_and_CE_loss``: softmax,
  soft Dice without the background class, smoothing 1e-5 in numerator and denominator, 1:1 with
  cross-entropy. MONAI's Dice term is ``1 - Dice`` where nnU-Net's is ``-Dice``: a constant offset of 1,
  the same gradients (our losses stay >= 0, which reads better in the logs).
* :class:`DeepSupervisedLoss` weights the levels 1, 1/2, 1/4, ... with the lowest level 0, normalised
  to sum 1 (nnU-Net). Every level is computed even at weight 0, so all output heads stay in the graph
  (DDP requires every parameter to receive a gradient; nnU-Net works around the same problem with 1e-6).
* :func:`curriculum_weight` and :class:`CurriculumLoss` implement eq. 2:
  ``L = f * L_expert + (1 - f) * L_MoME`` with ``f = (1 - epoch / epochs) ** 2`` (0-based epochs: f = 1
  in the first epoch, 0.25 half-way, ~0 in the last). ``L_expert`` supervises, for every sample, only
  the expert of that sample's modality, averaged over the batch (the released code sums over the batch;
  the mean keeps the two terms of eq. 2 on the same scale whatever the batch size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def deep_supervision_weights(n_levels: int) -> list[float]:
    """nnU-Net's weights for ``n_levels`` outputs (highest resolution first): 1/2^i, lowest 0, sum 1."""
    if n_levels < 1:
        raise ValueError("need at least one output level")
    weights = [1.0 / 2**i for i in range(n_levels)]
    if n_levels > 1:
        weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


class DiceCELoss(nn.Module):
    """Soft Dice (no background) + cross-entropy on logits ``(B, C, ...)`` and labels ``(B, 1, ...)``.

    Args:
        batch_dice: one Dice over the whole batch (True) or one per sample, averaged (False).
        dice_weight, ce_weight: term weights (nnU-Net: 1 and 1).
        smooth: added to the Dice numerator and denominator (nnU-Net: 1e-5).
    """

    def __init__(self, batch_dice: bool = False, dice_weight: float = 1.0, ce_weight: float = 1.0,
                 smooth: float = 1e-5):
        super().__init__()
        from monai.losses import DiceCELoss as _MonaiDiceCE

        self.loss = _MonaiDiceCE(include_background=False, to_onehot_y=True, softmax=True, batch=batch_dice,
                                 smooth_nr=smooth, smooth_dr=smooth, lambda_dice=dice_weight, lambda_ce=ce_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # fp32 whatever the autocast dtype: softmax sums over 10^5-10^6 voxels lose precision in bf16
        return self.loss(logits.float(), target.long())


class DeepSupervisedLoss(nn.Module):
    """``sum_l w_l * loss(outputs[l], targets[l])`` over deep-supervision levels (highest resolution first).

    Args:
        loss: the per-level loss (e.g. :class:`DiceCELoss`).
        n_levels: number of output levels (1 when the network's deep supervision is off); the weights
            are :func:`deep_supervision_weights`.
    """

    def __init__(self, loss: nn.Module, n_levels: int):
        super().__init__()
        self.loss = loss
        self.weights = deep_supervision_weights(n_levels)

    def forward(self, outputs: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
        if len(outputs) != len(self.weights) or len(targets) < len(outputs):
            raise ValueError(f"expected {len(self.weights)} output levels and as many targets, got "
                             f"{len(outputs)} outputs and {len(targets)} targets")
        total = outputs[0].new_zeros((), dtype=torch.float32)
        for w, out, tgt in zip(self.weights, outputs, targets):
            total = total + w * self.loss(out, tgt)
        return total


def curriculum_weight(epoch: int, epochs: int, power: float = 2.0, span: float = 1.0) -> float:
    """Eq. 2's ``f = (1 - epoch / epochs) ** 2`` for a 0-based ``epoch`` of ``epochs``.

    ``power`` and ``span`` generalise its shape and length (``TrainConfig.curriculum_power`` / ``_span``):
    ``f = (1 - min(epoch / (span * epochs), 1)) ** power``; the defaults are eq. 2.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not power > 0 or not 0 < span <= 1:
        raise ValueError(f"power must be > 0 and span in (0, 1], got {power}, {span}")
    progress = min(max(epoch, 0) / (span * epochs), 1.0)
    return (1.0 - progress) ** power


def select_sample_experts(expert_logits: list[list[torch.Tensor]], modality: torch.Tensor) -> list[torch.Tensor]:
    """For every sample b, expert ``modality[b]``'s logits: ``expert_logits[i][l]`` -> one tensor per level.

    Only the selected experts take part in the result, so a loss on it sends gradient to no other expert.
    """
    index = [int(m) for m in modality.tolist()]
    n_levels = len(expert_logits[0])
    return [torch.stack([expert_logits[m][level][b] for b, m in enumerate(index)]) for level in range(n_levels)]


@dataclass
class CurriculumTerms:
    """The parts of eq. 2 for one batch: ``total = f * expert + (1 - f) * mome``."""

    total: torch.Tensor
    expert: torch.Tensor
    mome: torch.Tensor
    f: float


class CurriculumLoss(nn.Module):
    """Eq. 2 (or eq. 4 with ``curriculum=False``: f = 0, only the fused outputs are supervised).

    Args:
        seg_loss: the deep-supervised segmentation loss applied to fused and to expert outputs.
        curriculum: use eq. 2; otherwise the expert term is computed for the log only (no gradient).
    """

    def __init__(self, seg_loss: DeepSupervisedLoss, curriculum: bool = True, power: float = 2.0,
                 span: float = 1.0):
        super().__init__()
        self.seg_loss = seg_loss
        self.curriculum = curriculum
        self.power, self.span = float(power), float(span)

    def forward(self, fused_logits: list[torch.Tensor], expert_logits: list[list[torch.Tensor]],
                targets: list[torch.Tensor], modality: torch.Tensor, epoch: int, epochs: int) -> CurriculumTerms:
        """Args:
            fused_logits: MoME's fused logits per level (``MoMEOutput.logits``).
            expert_logits: ``expert_logits[i][l]`` (``MoMEOutput.expert_logits``).
            targets: labels per level, each (B, 1, ...).
            modality: (B,) expert index of every sample's modality.
            epoch, epochs: 0-based current epoch and total epochs (for f).
        """
        f = curriculum_weight(epoch, epochs, self.power, self.span) if self.curriculum else 0.0
        mome = self.seg_loss(fused_logits, targets)
        if f > 0:
            expert = self.seg_loss(select_sample_experts(expert_logits, modality), targets)
        else:
            with torch.no_grad():
                expert = self.seg_loss(select_sample_experts(expert_logits, modality), targets)
        return CurriculumTerms(total=f * expert + (1.0 - f) * mome, expert=expert, mome=mome, f=f)
