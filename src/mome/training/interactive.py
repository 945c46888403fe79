"""Training the promptable SAM-Med3D comparator with simulated clicks (system ``sam-med3d``).

======================  ========  =====================================================================
name                    schedule  what is trained
======================  ========  =====================================================================
``sam-med3d``           scratch   SAM-Med3D on every seen training image, 11 simulated click rounds per
                                  crop, mask prompt detached between rounds
``sam-med3d-released``  scratch   the same with gradients through the chain of rounds (released code)
======================  ========  =====================================================================

The recipe is SAM-Med3D's ``train.py`` (uni-medical/SAM-Med3D), run through mome's pipeline (Lightning,
resume, DDP, run folders, the same seeded patch batches as every system):

* Crops: the training patch is the network's cubic input, centred on a random lesion voxel (SAM-Med3D's
  data loader crops "from a random click point": ``oversample_foreground = 1``), with mome's augmentation
  (SAM-Med3D flips only). No deep supervision.
* Interaction per crop: the image is embedded once; 11 rounds each add one click drawn uniformly from
  the current error region (positive in false negatives, negative in false positives; the first one in
  the lesion) and decode with every click so far and the previous low-resolution logits. One random round
  among rounds 2-8 and the last round get no points (mask prompt only), as SAM-Med3D trains its
  prompt-free steps. The loss is the sum over rounds of MONAI's ``DiceCELoss(sigmoid=True,
  squared_pred=True)`` on the upsampled logits. SAM-Med3D's default gives the decoder only the newest
  click (``--multi_click`` off); mome gives every click so far, as its evaluation does.
* One measured deviation: the previous round's logits enter the next round as the mask prompt
  *detached* (no gradient through the chain of rounds). SAM-Med3D keeps the chain; trained that way
  (system ``sam-med3d-released``), a tiny model learned to copy its previous mask and ignored every click
  after the first (mean Dice on held-out three-blob volumes 0.733 after 1 click, 0.739 after 10); with
  the chain cut, the same run went from 0.754 to 0.904 (400 steps, the test's task in
  ``tests/training/test_interactive.py``).
* Optimiser: AdamW (betas 0.9 / 0.999, weight decay 0.1), learning rate 8e-4 for the image encoder and
  8e-5 for the prompt encoder and mask decoder, divided by 10 at 60% and 90% of the epochs (SAM-Med3D:
  epochs 120 and 180 of 200). No gradient clipping.

A crop whose patch holds no lesion (augmentation can move a tiny lesion out) gets negative clicks at
random voxels, as SAM-Med3D's click code does without a label.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mome.errors import ConfigError, DataError
from mome.training.config import TrainConfig
from mome.training.objectives import Objective, StepResult
from mome.training.systems import Member, PlanContext, SystemSpec, register_system

TRAINING_CLICKS = 11
SAM_LR = 8e-4
SAM_WEIGHT_DECAY = 0.1
PROMPT_LR_FACTOR = 0.1
LR_MILESTONES = (0.6, 0.9)
# the crop side of each training preset (SAM-Med3D: 128^3 at 1.5 mm)
SAM_CROP = {"paper": 128, "cpu": 64, "tiny": 16}


def training_click(prediction: torch.Tensor, truth: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
    """SAM-Med3D's training click (uniform in the error region); a random negative click without lesion."""
    from mome.inference.clicks import next_click

    if not truth.any():
        return torch.tensor([int(rng.integers(s)) for s in truth.shape]), 0
    return next_click(prediction, truth, "random", rng)


class InteractiveObjective(Objective):
    """SAM-Med3D's click-simulation loss (see the module docstring).

    Logged: ``loss`` (sum over the rounds), ``dice_click1`` and ``dice_last`` (mean Dice of the training
    crops after the first and the last round), and the pseudo-Dice of the last round.
    """

    term_names = ("loss", "dice_click1", "dice_last")
    monitor = "loss"
    ddp_find_unused_parameters = True  # the three multi-mask tokens and their heads are never used

    def __init__(self, config: TrainConfig, n_clicks: int = TRAINING_CLICKS, detach_mask_prompt: bool = True):
        from monai.losses import DiceCELoss

        if n_clicks < 2:
            raise ConfigError(f"SAM-Med3D training needs at least 2 click rounds, got {n_clicks}")
        self.loss = DiceCELoss(sigmoid=True, squared_pred=True, reduction="mean")
        self.n_clicks = n_clicks
        self.detach_mask_prompt = bool(detach_mask_prompt)
        self.seed = int(config.seed)
        self._epoch, self._count = -1, 0

    def configure_optimizer(self, network: nn.Module, config: TrainConfig) -> dict:
        lr = config.initial_lr
        groups = [{"params": list(network.image_encoder.parameters())},
                  {"params": list(network.prompt_encoder.parameters()), "lr": lr * PROMPT_LR_FACTOR},
                  {"params": list(network.mask_decoder.parameters()), "lr": lr * PROMPT_LR_FACTOR}]
        optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), weight_decay=config.weight_decay)
        milestones = sorted({max(1, round(f * config.epochs)) for f in LR_MILESTONES})
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def _rng(self, epoch: int) -> np.random.Generator:
        # one stream per (seed, epoch, step): a run resumed at an epoch boundary draws the same clicks
        if epoch != self._epoch:
            self._epoch, self._count = epoch, 0
        self._count += 1
        return np.random.default_rng([self.seed, epoch, self._count])

    def step(self, network: nn.Module, batch: dict, epoch: int, epochs: int) -> StepResult:
        from mome.inference.clicks import dice
        from mome.model.baselines.sam_med3d import upsample

        rng = self._rng(epoch)
        image = batch["image"]
        truth = batch["target"][0][:, :1] > 0  # (B, 1, S, S, S)
        target = truth.to(image.dtype)
        size, batch_size = image.shape[-1], image.shape[0]
        embedding = network.embed(image)
        low = torch.zeros((batch_size, 1) + (network.config.low_res,) * 3, device=image.device, dtype=image.dtype)
        prediction = torch.zeros_like(truth[:, 0])
        points: list[list[torch.Tensor]] = [[] for _ in range(batch_size)]
        labels: list[list[int]] = [[] for _ in range(batch_size)]
        prompt_free = {int(rng.integers(2, 9)), self.n_clicks - 1}
        total = image.new_zeros(())
        dices = []
        for round_ in range(self.n_clicks):
            for b in range(batch_size):
                point, label = training_click(prediction[b].cpu(), truth[b, 0].cpu(), rng)
                points[b].append(point)
                labels[b].append(label)
            if round_ in prompt_free:
                low, _ = network.decode(embedding, None, None, low)
            else:
                coords = torch.stack([torch.stack(p) for p in points]).float().to(image.device)
                low, _ = network.decode(embedding, coords, torch.tensor(labels, device=image.device), low)
            logits = upsample(low, size)
            total = total + self.loss(logits, target)
            if self.detach_mask_prompt:
                low = low.detach()
            prediction = (logits.detach() > 0)[:, 0]
            if round_ in (0, self.n_clicks - 1):
                dices.append(np.mean([dice(prediction[b].cpu(), truth[b, 0].cpu()) for b in range(batch_size)]))
        with torch.no_grad():
            pred, ref = prediction, truth[:, 0]
            counts = torch.stack([(pred & ref).sum(), (pred & ~ref).sum(), (~pred & ref).sum()]).double()
        return StepResult(total, {"loss": total.detach(), "dice_click1": torch.tensor(dices[0]),
                                  "dice_last": torch.tensor(dices[-1])}, {"tp_fp_fn": counts})


def plan_sam_med3d(ctx: PlanContext, detach_mask_prompt: bool = True) -> list[Member]:
    """One SAM-Med3D on every seen training case; its crop is the training patch (cubic)."""
    from mome.model.baselines.sam_med3d import SAMMed3D, sam_med3d_config

    cases = ctx.training_cases(seen=True)
    if not cases:
        raise DataError(f"collection {ctx.collection.name!r} has no training case (split=train, seen) of the "
                        f"modalities {', '.join(ctx.model_config.modalities)}; sam-med3d needs them")
    patch = list(ctx.config.patch_size)
    if len(set(patch)) != 1:
        raise ConfigError(f"SAM-Med3D takes cubic crops; the training patch is {patch} (set --patch-size N)")
    if ctx.config.deep_supervision:
        raise ConfigError("SAM-Med3D has one output: train it without deep supervision")
    preset = ctx.config.model if ctx.config.model in SAM_CROP else "paper"
    net_config = sam_med3d_config(preset, img_size=int(patch[0]))
    info = {"datasets": sorted({c.dataset for c in cases}), "tasks": sorted({c.task for c in cases}),
            "interactive": True, "training_clicks": TRAINING_CLICKS, "click_rule_training": "random",
            "mask_prompt_detached": detach_mask_prompt,
            "architecture_note": "SAM-Med3D architecture trained from scratch by mome (no SAM-Med3D weights)"}
    return [Member(key="", cases=cases, modalities=sorted({c.modality for c in cases}),
                   build=lambda: SAMMed3D(net_config),
                   objective=InteractiveObjective(ctx.config, detach_mask_prompt=detach_mask_prompt), info=info)]


_DEFAULTS = dict(train_defaults={"initial_lr": SAM_LR, "weight_decay": SAM_WEIGHT_DECAY, "grad_clip_scope": "none",
                                 "deep_supervision": False, "oversample_foreground": 1.0},
                 preset_defaults={name: {"patch_size": [size] * 3} for name, size in SAM_CROP.items()})
register_system(SystemSpec(
    "sam-med3d", "baseline: SAM-Med3D (promptable), trained with 11 simulated clicks per crop; interactive",
    "scratch", plan_sam_med3d, **_DEFAULTS))
register_system(SystemSpec(
    "sam-med3d-released", "baseline: SAM-Med3D with gradients through the click rounds, as its released code",
    "scratch", lambda ctx: plan_sam_med3d(ctx, detach_mask_prompt=False), **_DEFAULTS))
