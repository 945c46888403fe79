"""Objectives: how a system turns a batch into the loss and the per-epoch statistics it logs.

An :class:`Objective` is the one piece a new system (e.g. a baseline with another network and loss)
has to provide besides its network: :meth:`Objective.step` returns the loss to back-propagate, scalar
terms averaged over the epoch, and additive statistics summed over the epoch and the DDP processes;
:meth:`Objective.summarise` turns those sums into log columns.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mome.training.config import TrainConfig
from mome.training.losses import CurriculumLoss, DeepSupervisedLoss, DiceCELoss


@dataclass
class StepResult:
    """One training step's output.

    Attributes:
        loss: the scalar to back-propagate.
        terms: scalar values (detached) averaged over the epoch's steps, logged under their names.
        sums: additive statistics (tensors of fixed shape) summed over the epoch and the DDP processes.
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    sums: dict[str, torch.Tensor] = field(default_factory=dict)


class Objective(abc.ABC):
    """Base class. Subclasses set :attr:`term_names` and implement :meth:`step`.

    Attributes:
        term_names: the keys of ``StepResult.terms`` (``loss`` first), in log order.
        monitor: the term whose smoothed epoch mean picks the "best" weights (lower is better).
        ddp_find_unused_parameters: set True when some parameters receive no gradient in a step (DDP
            must then look for them, at some cost); MoME's basic gate and disabled deep supervision
            are detected by the runner.
    """

    term_names: tuple[str, ...] = ("loss",)
    monitor: str = "loss"
    ddp_find_unused_parameters: bool = False

    @abc.abstractmethod
    def step(self, network: nn.Module, batch: dict, epoch: int, epochs: int) -> StepResult:
        """The loss of one batch (see :class:`StepResult`); ``epoch`` is 0-based, of ``epochs``."""

    def auxiliary(self, network: nn.Module) -> nn.Module | None:
        """Training-only modules the objective adds to ``network`` (trained with it, never saved with it)."""
        return None

    def configure_optimizer(self, network: nn.Module, config: TrainConfig) -> dict | None:
        """Lightning's optimizer (+ scheduler) dict for a system with its own recipe; None = nnU-Net's SGD
        with the poly schedule (:class:`~mome.training.module.TrainingModule`)."""
        return None

    def columns(self) -> list[str]:
        """Log columns produced by :meth:`summarise` (fixed for a run, so the CSV header is known upfront)."""
        return ["pseudo_dice"]

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        """Epoch sums -> log values: nnU-Net's pseudo-Dice of the training patches (lesion class)."""
        if "tp_fp_fn" not in sums:
            return {"pseudo_dice": float("nan")}
        tp, fp, fn = (float(v) for v in sums["tp_fp_fn"])
        denom = 2 * tp + fp + fn
        return {"pseudo_dice": 2 * tp / denom if denom > 0 else float("nan")}

    def clip_parameters(self, network: nn.Module, scope: str) -> list[nn.Parameter]:
        """Parameters whose gradient norm is clipped: every one for ``all``, none for ``none``.

        ``gate`` (the released MoME code) clips a MoME's gate only; networks without a gate are clipped
        whole, as nnU-Net (and the released code's stage 1) did.
        """
        if scope == "none":
            return []
        if scope == "gate" and hasattr(network, "gate"):
            return list(network.gate.parameters())
        return list(network.parameters())


def overlap_counts(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(tp, fp, fn) of the lesion (every non-background class) from full-resolution logits, as float64."""
    with torch.no_grad():
        pred = logits.argmax(dim=1) > 0
        truth = target[:, 0] > 0
        return torch.stack([(pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum()]).double()


def segmentation_loss(config: TrainConfig, n_levels: int) -> DeepSupervisedLoss:
    """nnU-Net's DC + CE, deep-supervised over ``n_levels`` outputs (one when deep supervision is off)."""
    base = DiceCELoss(batch_dice=config.batch_dice, dice_weight=config.dice_weight, ce_weight=config.ce_weight)
    return DeepSupervisedLoss(base, n_levels if config.deep_supervision else 1)


class TissueHead(nn.Module):
    """A 1x1x1 convolution on a U-Net's last decoder stage that predicts the tissue classes (training only).

    Written by hand because no library adds an auxiliary head to nnU-Net's ``PlainConvUNet`` without
    changing its state dict: the features are taken with a forward hook, so the network (and every saved
    or exported model) stays exactly as it was.
    """

    def __init__(self, network: nn.Module, n_classes: int):
        super().__init__()
        stage = network.decoder.stages[-1]
        channels = [m for m in stage.modules() if isinstance(m, nn.Conv3d)][-1].out_channels
        self.conv = nn.Conv3d(channels, n_classes, kernel_size=1)
        self.features: torch.Tensor | None = None
        stage.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output) -> None:
        self.features = output

    def forward(self) -> torch.Tensor:
        if self.features is None:
            raise RuntimeError("the network has not run since the tissue head was attached")
        features, self.features = self.features, None
        return self.conv(features)


def tissue_loss(logits: torch.Tensor, tissue: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the voxels of known tissue (``tissue`` (B, 1, ...) classes 1..K, 0 = unknown)."""
    target = tissue[:, 0].long() - 1
    if not bool((target >= 0).any()):  # a batch of collection patches only: no tissue to learn from
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), target, ignore_index=-1)


class SegmentationObjective(Objective):
    """A network returning logits per deep-supervision level (a U-Net): deep-supervised DC + CE.

    With ``config.tissue_weight`` > 0, plus that weight times the cross-entropy of a training-only
    :class:`TissueHead` against the generated patches' tissue classes; the best weights are then chosen on
    ``loss_seg`` (the lesion mask is what is deployed).
    """

    def __init__(self, config: TrainConfig, n_levels: int):
        from mome.data.domain.generator import TISSUE_CLASSES

        self.loss = segmentation_loss(config, n_levels)
        self.tissue_weight = float(config.tissue_weight)
        self.tissue_classes = len(TISSUE_CLASSES)
        self.head: TissueHead | None = None
        if self.tissue_weight > 0:
            self.term_names = ("loss", "loss_seg", "loss_tissue")
            self.monitor = "loss_seg"

    def auxiliary(self, network: nn.Module) -> nn.Module | None:
        if self.tissue_weight > 0:
            self.head = TissueHead(network, self.tissue_classes)
        return self.head

    def step(self, network: nn.Module, batch: dict, epoch: int, epochs: int) -> StepResult:
        outputs = network(batch["image"])
        loss = self.loss(outputs, batch["target"])
        sums = {"tp_fp_fn": overlap_counts(outputs[0], batch["target"][0])}
        if self.head is None:
            return StepResult(loss, {"loss": loss.detach()}, sums)
        tissue = tissue_loss(self.head(), batch["tissue"])
        total = loss + self.tissue_weight * tissue
        return StepResult(total, {"loss": total.detach(), "loss_seg": loss.detach(), "loss_tissue": tissue.detach()},
                          sums)


class MoMEObjective(Objective):
    """MoME's curriculum loss (eq. 2, or eq. 4 without curriculum) and the gate statistics.

    Logged terms: ``loss`` (eq. 2), ``loss_expert`` (each sample's own expert), ``loss_mome`` (fused
    output), ``f``. The best weights are chosen on ``loss_mome``: the fused output is what is deployed,
    and the total's mix of terms changes with f. Gate columns ``gate_<expert>_on_<modality>``: the mean
    over voxels of expert ``<expert>``'s weight for the lesion class(es) at full resolution, averaged
    over the epoch's samples of modality ``<modality>`` (empty when no such sample was drawn).
    """

    term_names = ("loss", "loss_expert", "loss_mome", "f")
    monitor = "loss_mome"

    def __init__(self, config: TrainConfig, n_levels: int, modalities: list[str]):
        self.loss = CurriculumLoss(segmentation_loss(config, n_levels), curriculum=config.curriculum,
                                  power=config.curriculum_power, span=config.curriculum_span)
        self.modalities = list(modalities)

    def step(self, network: nn.Module, batch: dict, epoch: int, epochs: int) -> StepResult:
        out = network(batch["image"], return_experts=True, return_gates=True)
        terms = self.loss(out.logits, out.expert_logits, batch["target"], batch["modality"], epoch, epochs)
        n = len(self.modalities)
        with torch.no_grad():
            # (B, N): mean weight of every expert on the lesion class(es) of every sample
            per_sample = out.gates[0][:, :, 1:].float().mean(dim=tuple(range(2, out.gates[0].ndim)))
            onehot = torch.nn.functional.one_hot(batch["modality"], n).double()  # (B, M)
            gate_sum = onehot.T @ per_sample.double()  # (M input modalities, N experts)
            gate_count = onehot.sum(dim=0)
        return StepResult(
            terms.total,
            {"loss": terms.total.detach(), "loss_expert": terms.expert.detach(), "loss_mome": terms.mome.detach(),
             "f": torch.tensor(terms.f)},
            {"tp_fp_fn": overlap_counts(out.logits[0], batch["target"][0]), "gate_sum": gate_sum,
             "gate_count": gate_count},
        )

    def gate_columns(self) -> list[str]:
        return [f"gate_{e}_on_{m}" for m in self.modalities for e in self.modalities]

    def columns(self) -> list[str]:
        return super().columns() + self.gate_columns()

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        out = super().summarise(sums)
        names = iter(self.gate_columns())
        n = len(self.modalities)
        gate_sum = sums.get("gate_sum", torch.zeros(n, n, dtype=torch.float64))
        gate_count = sums.get("gate_count", torch.zeros(n, dtype=torch.float64))
        for m in range(n):
            for e in range(n):
                count = float(gate_count[m])
                out[next(names)] = float(gate_sum[m, e]) / count if count > 0 else math.nan
        return out
