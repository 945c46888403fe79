"""Training the Multi-Talent and Hermes comparators: their objectives, plans and system registrations.

=================  ========  ==========================================================================
name               schedule  what is trained
=================  ========  ==========================================================================
``multitalent``    scratch   one U-Net with one head per seen dataset; each sample's loss on its own head
``hermes``         scratch   U-Net + modality/task tokens (task = lesion type); seg loss + 0.01 x modality CE
=================  ========  ==========================================================================

Recipes (the MoME paper: "All the other models were based on nnU-Net and used its default
hyperparameters"; 800 epochs like every scratch system):

* Multi-Talent: nnU-Net's SGD, poly schedule and DC+CE deep supervision, with the Multi-Talent trainer's
  initial learning rate 1e-3 (``initial_lr = 1e-3`` in MIC-DKFZ/MultiTalent's ``MultiTalent_trainer``;
  nnU-Net's default is 1e-2). Its released plans use batch 4; we keep the preset's batch (2), so every
  system of the benchmark sees the same number of patches. Its sampling draws each case with probability
  proportional to ``1 / sqrt(size of its dataset)`` (:func:`sqrt_dataset_weights`), i.e. a dataset with
  ``sqrt(n)`` weight: between uniform over cases (large datasets dominate) and uniform over datasets.
  The member passes these as the patch sampler's ``case_weights``. With ``TrainConfig.sampling`` left
  at ``case`` they alone decide; an explicit ``task`` / ``dataset`` still draws the group uniformly
  (the weights are then uniform within it) and the model's metadata records it (``sampling_note``).
* Hermes: nnU-Net's defaults (LR 1e-2) for the U-Net and the attention layers alike, plus Hermes's
  auxiliary modality cross-entropy with weight 0.01 (``loss_mod_weight`` in Hermes's released config).
  The original Hermes trains with LAMB (LR 2e-3, warm-up); the paper trained its adaptation with
  nnU-Net's defaults, as here.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mome.errors import DataError
from mome.training.objectives import Objective, StepResult, overlap_counts, segmentation_loss
from mome.training.systems import Member, PlanContext, SystemSpec, register_system

MULTITALENT_LR = 1e-3
HERMES_MODALITY_LOSS_WEIGHT = 0.01


def sqrt_dataset_weights(datasets: Sequence[str]) -> list[float]:
    """Multi-Talent's case sampling probabilities: ``1 / sqrt(n_d)`` for a case of a dataset with n_d cases.

    Args:
        datasets: the dataset of every training case (one entry per case).

    Returns:
        One probability per case, summing to 1; a dataset's total is ``sqrt(n_d) / sum_k sqrt(n_k)``.
    """
    counts = Counter(datasets)
    if not counts:
        raise DataError("no training cases to weight")
    raw = [1.0 / math.sqrt(counts[d]) for d in datasets]
    total = sum(raw)
    return [w / total for w in raw]


class MultiTalentObjective(Objective):
    """Deep-supervised DC + CE on each sample's own dataset head (other heads get no gradient).

    Logged: ``loss``, the training pseudo-Dice and ``share_<dataset>``: the fraction of the epoch's samples
    drawn from each dataset (shows the sampling scheme at work).
    """

    def __init__(self, config, n_levels: int, datasets: Sequence[str]):
        self.loss = segmentation_loss(config, n_levels)
        self.datasets = list(datasets)

    def step(self, network: nn.Module, batch: dict, epoch: int, epochs: int) -> StepResult:
        outputs = network(batch["image"], dataset=batch["dataset"])
        loss = self.loss(outputs, batch["target"])
        index = network.dataset_indices(batch["dataset"], len(batch["dataset"]))
        counts = torch.bincount(index, minlength=len(self.datasets)).double()
        return StepResult(loss, {"loss": loss.detach()},
                          {"tp_fp_fn": overlap_counts(outputs[0], batch["target"][0]), "dataset_count": counts})

    def columns(self) -> list[str]:
        return super().columns() + [f"share_{d}" for d in self.datasets]

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        out = super().summarise(sums)
        counts = sums.get("dataset_count", torch.zeros(len(self.datasets), dtype=torch.float64))
        total = float(counts.sum())
        for d, c in zip(self.datasets, counts):
            out[f"share_{d}"] = float(c) / total if total > 0 else math.nan
        return out


class HermesObjective(Objective):
    """Deep-supervised DC + CE of the task-token masks + ``modality_weight`` x modality cross-entropy.

    Logged: ``loss`` (total), ``loss_seg``, ``loss_modality``, ``modality_accuracy`` (of the auxiliary
    head); the best weights are chosen on ``loss_seg`` (the mask is what is deployed).
    """

    term_names = ("loss", "loss_seg", "loss_modality", "modality_accuracy")
    monitor = "loss_seg"

    def __init__(self, config, n_levels: int, task_key: str, modality_weight: float = HERMES_MODALITY_LOSS_WEIGHT):
        self.loss = segmentation_loss(config, n_levels)
        self.task_key = task_key
        self.modality_weight = float(modality_weight)

    def tasks_of(self, batch: dict) -> list[str]:
        """Every sample's task name per ``task_key`` (batch keys of :class:`~mome.training.sampling.PatchBatches`)."""
        key = {"lesion_type": "lesion_type", "dataset": "dataset", "dataset_modality": "task"}[self.task_key]
        return list(batch[key])

    def step(self, network: nn.Module, batch: dict, epoch: int, epochs: int) -> StepResult:
        modality = network.modality_indices(batch["modality_name"], len(batch["modality_name"]),
                                            batch["image"].device)
        out = network(batch["image"], modality=modality, task=self.tasks_of(batch))
        seg = self.loss(out.logits, batch["target"])
        mod = F.cross_entropy(out.modality_logits.float(), modality)
        loss = seg + self.modality_weight * mod
        accuracy = (out.modality_logits.argmax(dim=1) == modality).double().mean()
        return StepResult(loss, {"loss": loss.detach(), "loss_seg": seg.detach(), "loss_modality": mod.detach(),
                                 "modality_accuracy": accuracy.detach()},
                          {"tp_fp_fn": overlap_counts(out.logits[0], batch["target"][0])})


def _seen_cases(ctx: PlanContext, system: str):
    cases = ctx.training_cases(seen=True)
    if not cases:
        raise DataError(f"collection {ctx.collection.name!r} has no training case (split=train, seen) of the "
                        f"modalities {', '.join(ctx.model_config.modalities)}; {system} needs them")
    return cases


def plan_multitalent(ctx: PlanContext) -> list[Member]:
    """One Multi-Talent network on every seen training case, one head per seen dataset."""
    from mome.model import build_model
    from mome.model.baselines import multitalent_config

    cases = _seen_cases(ctx, "multitalent")
    datasets = sorted({c.dataset for c in cases})
    net_config = multitalent_config(ctx.model_config.expert, datasets)
    weights = sqrt_dataset_weights([c.dataset for c in cases])
    share = {d: round(sum(w for w, c in zip(weights, cases) if c.dataset == d), 4) for d in datasets}
    info = {"datasets": datasets, "tasks": sorted({c.task for c in cases}), "heads": datasets,
            "sampling_method": "case probability proportional to 1/sqrt(dataset size)",
            "sampling_method_dataset_shares": share}
    if ctx.config.sampling != "case":
        info["sampling_note"] = (f"trained with TrainConfig.sampling={ctx.config.sampling!r}: a "
                                 f"{ctx.config.sampling} is drawn uniformly first, then a case in it by weight")
    return [Member(key="", cases=cases, modalities=sorted({c.modality for c in cases}),
                   build=lambda: build_model(net_config),
                   objective=MultiTalentObjective(ctx.config, net_config.unet.n_levels(), datasets), info=info,
                   case_weights=weights)]


def plan_hermes(ctx: PlanContext, task_key: str = "lesion_type") -> list[Member]:
    """One Hermes network on every seen training case; tokens for the model's modalities and seen tasks."""
    from mome.model import build_model
    from mome.model.baselines import HermesConfig

    cases = _seen_cases(ctx, "hermes")
    probe = HermesConfig(unet=ctx.model_config.expert, task_key=task_key)
    tasks = sorted({probe.task_name(dataset=c.dataset, modality=c.modality, lesion_type=c.lesion_type)
                    for c in cases})
    net_config = probe.replace(modalities=list(ctx.model_config.modalities), tasks=tasks)
    info = {"datasets": sorted({c.dataset for c in cases}), "tasks": sorted({c.task for c in cases}),
            "hermes_tasks": tasks, "task_key": task_key, "modality_loss_weight": HERMES_MODALITY_LOSS_WEIGHT}
    return [Member(key="", cases=cases, modalities=sorted({c.modality for c in cases}),
                   build=lambda: build_model(net_config),
                   objective=HermesObjective(ctx.config, net_config.unet.n_levels(), task_key), info=info)]


register_system(SystemSpec("multitalent", "baseline: Multi-Talent, one U-Net with one output head per seen dataset",
                           "scratch", plan_multitalent, train_defaults={"initial_lr": MULTITALENT_LR}))
register_system(SystemSpec("hermes", "baseline: Hermes, U-Net with modality and task (lesion type) tokens",
                           "scratch", plan_hermes))
