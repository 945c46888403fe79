"""Training configuration: nnU-Net's defaults made explicit, as a JSON-serialisable dataclass, and presets.

Every number nnU-Net hard-codes in its trainer is a field here, with nnU-Net's value as the default
(``nnUNetTrainer`` v2): SGD with Nesterov momentum 0.99, weight decay 3e-5, poly learning rate
``lr = initial_lr * (1 - epoch / epochs) ** 0.9`` stepped once per epoch, 250 iterations per epoch,
33% foreground oversampling, Dice + cross-entropy 1:1 with deep-supervision weights 1, 1/2, 1/4, ...
(lowest level 0, normalised), gradient-norm clipping at 12.

A preset (``tiny``, ``cpu``, ``paper``) names one config per *schedule*:

* ``pretrain``: stage 1, one expert per modality (nnU-Net defaults: LR 1e-2; the paper's 1000 epochs).
* ``scratch``: baselines trained from random weights (single U-Net, task-specific U-Nets; LR 1e-2,
  800 epochs as in the paper: "All models were trained for 800 epochs").
* ``joint``: stage 2, MoME from the experts with the curriculum loss (LR 1e-3, 800 epochs).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from mome.data.domain import P_NO_LESION, P_RANDOM_CONTRAST
from mome.errors import ConfigError

SCHEDULES = ("pretrain", "scratch", "joint")
PRECISIONS = ("32", "bf16-mixed", "16-mixed")
CLIP_SCOPES = ("all", "gate", "none")
SAMPLINGS = ("case", "task", "dataset")


@dataclass
class TrainConfig:
    """Everything that decides a training run (saved as JSON in every run folder).

    Attributes:
        model: architecture preset name (``mome info`` lists them).
        epochs: number of epochs; the poly LR and the curriculum weight both run over them.
        iterations_per_epoch: optimizer steps per epoch (nnU-Net: 250).
        batch_size: global batch size (split over DDP processes as nnU-Net does).
        patch_size: training patch in voxels (x, y, z); multiples of the network's divisor.
        initial_lr: start of the poly schedule (nnU-Net: 1e-2; MoME stage 2: 1e-3).
        lr_exponent: poly schedule exponent (nnU-Net: 0.9).
        momentum, nesterov, weight_decay: SGD settings (nnU-Net: 0.99, True, 3e-5).
        oversample_foreground: fraction of each batch (by position, nnU-Net's rule
            ``index >= round(batch * (1 - p))``) whose patch is centred on a lesion voxel.
        augmentation: nnU-Net's augmentation pipeline (batchgeneratorsv2) on or off.
        intensity_shift: standard deviation of a random additive shift of each patch's z-scored intensities
            (applied to half the patches, before masking; 0 = nnU-Net's pipeline unchanged). nnU-Net only
            scales intensities, so a network never sees the most common tissue land at another z-score
            level, which it does between synthetic and real scans (issue 13).
        batch_dice: Dice over the whole batch (True) or per sample, then averaged (False, the default:
            what nnU-Net plans for 3d_fullres when no 3d_lowres exists, as for 160x196x160 brains with
            a 128^3 patch; it also keeps the per-sample expert term of eq. 2 independent per sample).
        dice_weight, ce_weight: weights of the soft Dice (no background) and cross-entropy terms.
        deep_supervision: supervise every decoder level (weights 1, 1/2, ..., lowest 0, normalised).
        curriculum: eq. 2 (f = (1 - epoch/epochs)^2) for MoME; False gives eq. 4 (fused loss only).
        curriculum_power, curriculum_span: the curriculum's shape and length, for the gate-routing study
            (issue 17): ``f = (1 - min(epoch / (span * epochs), 1)) ** power``; eq. 2 is power 2, span 1
            (the paper and the released code). Power 1 keeps the experts' own term longer (linear decay);
            span 0.5 ends the curriculum halfway through training.
        gate_lr_scale: the gating network's learning rate as a multiple of ``initial_lr`` (MoME only; the
            paper and the released code: 1, one rate for gate and experts).
        grad_clip_norm: max gradient norm (nnU-Net: 12).
        grad_clip_scope: ``all`` parameters (nnU-Net's rule, our default), ``gate`` only (the released
            MoME code's rule) or ``none``.
        precision: Lightning precision: ``32``, ``bf16-mixed`` (CPU or GPU autocast) or ``16-mixed`` (GPU).
        sampling: pick each patch's case uniformly over ``case`` (nnU-Net, released MoME), or first a
            ``task`` (dataset x modality) or a ``dataset`` uniformly, then a case in it (balanced).
        spacing_mm: voxel spacing (mm, RAS axes) the cases are resampled to; None = their median.
        seed: seeds weights, patch sampling and augmentation (recorded in every run folder).
        num_workers: DataLoader worker processes (0 = in the training process; determinism does not
            depend on it because every batch is generated from its own seed).
        label_maps, lesion_masks: folders of real label maps (SynthSeg's) and real lesion masks
            (``ms_mni/``, ``stroke_mni/``) for the domain-randomised generator (:mod:`mome.data.domain`).
        domain_fraction: share of the batch positions drawn from that generator instead of the
            collection (0 = collection only; 1 = generated only).
        domain_no_lesion: share of the generated volumes drawn without a lesion (healthy anatomy).
        domain_random_contrast: share of the generated volumes whose label intensities are fully random
            (the rest follow the modality's tissue prior; SynthSeg draws every sample at random).
        tissue_weight: weight of an auxiliary tissue-class loss on the generated patches (single U-Nets and
            stage-1 experts; SynthStroke's idea of predicting the tissue classes beside the lesion): a 1x1x1
            convolution on the last decoder stage's features predicts the generator's six tissue groups
            (cross-entropy; lesion, extra-cerebral and collection voxels are ignored). The head exists only in
            training: the saved network is unchanged. 0 = off (needs ``domain_fraction`` > 0 when on).
        cache_dir: None keeps the prepared volumes in memory; a folder stores them as .npy files that
            are memory-mapped (for collections that do not fit in RAM).
        best_ema: smoothing of the per-epoch monitored loss for choosing the "best" weights
            (``ema = best_ema * ema + (1 - best_ema) * loss``, as nnU-Net smooths its pseudo-Dice).
        gradient_checkpointing: recompute each encoder/decoder stage in the backward pass instead of
            storing its activations (same gradients; on an H100 paper MoME at batch 2, 128^3 in bf16:
            15.4 GiB instead of 24.5 GiB, 0.71 s instead of 0.56 s per step; docs/performance.md).
    """

    model: str = "paper"
    epochs: int = 800
    iterations_per_epoch: int = 250
    batch_size: int = 2
    patch_size: list[int] = field(default_factory=lambda: [128, 128, 128])
    initial_lr: float = 1e-2
    lr_exponent: float = 0.9
    momentum: float = 0.99
    nesterov: bool = True
    weight_decay: float = 3e-5
    oversample_foreground: float = 0.33
    augmentation: bool = True
    intensity_shift: float = 0.0
    batch_dice: bool = False
    dice_weight: float = 1.0
    ce_weight: float = 1.0
    deep_supervision: bool = True
    curriculum: bool = True
    curriculum_power: float = 2.0
    curriculum_span: float = 1.0
    gate_lr_scale: float = 1.0
    grad_clip_norm: float = 12.0
    grad_clip_scope: str = "all"
    precision: str = "32"
    sampling: str = "case"
    spacing_mm: list[float] | None = None
    seed: int = 0
    num_workers: int = 0
    cache_dir: str | None = None
    label_maps: str | None = None
    lesion_masks: str | None = None
    domain_fraction: float = 0.0
    domain_no_lesion: float = P_NO_LESION
    domain_random_contrast: float = P_RANDOM_CONTRAST
    tissue_weight: float = 0.0
    best_ema: float = 0.9
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        self.patch_size = [int(p) for p in _triple(self.patch_size, "patch_size")]
        if self.spacing_mm is not None:
            self.spacing_mm = [float(s) for s in _triple(self.spacing_mm, "spacing_mm")]
            if min(self.spacing_mm) <= 0:
                raise ConfigError(f"spacing_mm must be positive, got {self.spacing_mm}")
        for name in ("epochs", "iterations_per_epoch", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if min(self.patch_size) < 1:
            raise ConfigError(f"patch_size must be positive, got {self.patch_size}")
        if self.initial_lr <= 0:
            raise ConfigError(f"initial_lr must be > 0, got {self.initial_lr}")
        if not 0.0 <= self.oversample_foreground <= 1.0:
            raise ConfigError(f"oversample_foreground must be in [0, 1], got {self.oversample_foreground}")
        if not 0.0 <= self.best_ema < 1.0:
            raise ConfigError(f"best_ema must be in [0, 1), got {self.best_ema}")
        if not 0.0 <= float(self.domain_fraction) <= 1.0:
            raise ConfigError(f"domain_fraction must be in [0, 1], got {self.domain_fraction}")
        if not float(self.curriculum_power) > 0:
            raise ConfigError(f"curriculum_power must be > 0, got {self.curriculum_power}")
        if not 0.0 < float(self.curriculum_span) <= 1.0:
            raise ConfigError(f"curriculum_span must be in (0, 1], got {self.curriculum_span}")
        if not float(self.gate_lr_scale) > 0:
            raise ConfigError(f"gate_lr_scale must be > 0, got {self.gate_lr_scale}")
        if not 0.0 <= float(self.domain_no_lesion) <= 1.0:
            raise ConfigError(f"domain_no_lesion must be in [0, 1], got {self.domain_no_lesion}")
        if not 0.0 <= float(self.domain_random_contrast) <= 1.0:
            raise ConfigError(f"domain_random_contrast must be in [0, 1], got {self.domain_random_contrast}")
        if self.domain_fraction > 0 and not self.label_maps:
            raise ConfigError("domain_fraction > 0 needs label_maps (--label-maps DIR)")
        if not (0.0 <= float(self.dice_weight) <= 100.0 and 0.0 <= float(self.ce_weight) <= 100.0):
            raise ConfigError(f"dice_weight and ce_weight must be in [0, 100], got {self.dice_weight} and "
                              f"{self.ce_weight}")
        if self.dice_weight + self.ce_weight <= 0:
            raise ConfigError("dice_weight and ce_weight cannot both be 0 (no segmentation loss)")
        if not 0.0 <= float(self.tissue_weight) <= 100.0:
            raise ConfigError(f"tissue_weight must be in [0, 100], got {self.tissue_weight}")
        if self.tissue_weight > 0 and self.gradient_checkpointing:
            raise ConfigError("tissue_weight > 0 cannot be combined with gradient_checkpointing (the tissue head "
                              "reads the decoder's features as they are computed)")
        if self.tissue_weight > 0 and not self.domain_fraction > 0:
            raise ConfigError("tissue_weight > 0 needs generated patches (--label-maps and --domain-fraction > 0): "
                              "only the domain-randomised generator knows the tissue classes")
        if not 0.0 <= float(self.intensity_shift) <= 5.0:
            raise ConfigError(f"intensity_shift must be in [0, 5] (z-score units), got {self.intensity_shift}")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")
        _choice("precision", str(self.precision), PRECISIONS)
        self.precision = str(self.precision)
        _choice("grad_clip_scope", self.grad_clip_scope, CLIP_SCOPES)
        _choice("sampling", self.sampling, SAMPLINGS)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with ``changes`` applied (``None`` values are ignored, so CLI options can pass through)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown fields raise :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"TrainConfig has no fields {sorted(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"train config is not valid JSON: {exc}") from exc


def _triple(v, name: str) -> list:
    if isinstance(v, (int, float)):
        return [v, v, v]
    v = list(v)
    if len(v) != 3:
        raise ConfigError(f"{name} needs 1 or 3 values (x, y, z), got {v}")
    return v


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


# --- presets --------------------------------------------------------------------------------------

def _paper(schedule: str) -> TrainConfig:
    epochs = {"pretrain": 1000, "scratch": 800, "joint": 800}[schedule]
    lr = 1e-3 if schedule == "joint" else 1e-2
    return TrainConfig(model="paper", epochs=epochs, initial_lr=lr)


def _cpu(schedule: str) -> TrainConfig:
    # Sized so that every system (5 experts, MoME + 3 ablations, single, 17 task-specific U-Nets,
    # Multi-Talent, Hermes) trains on the cpu synthetic benchmark (2 mm, 80x98x80 voxels) in about
    # 75 minutes on 2 shared cores (1 thread per process): measured steps (32^3, batch 2, tcmalloc) of
    # about 0.19 s for a U-Net and 1.2 s for MoME give (5 * 500 + 20.5 * 400) * 0.19 + 4 * 400 * 1.2
    # = 3,900 s of steps, plus loading and checkpoints; docs/training.md has the measurements. Epoch
    # ratios follow the paper's (stage 1 : others = 1000 : 800). fp32, not bf16: on this project's CPUs
    # (AVX-512 BF16) bf16 autocast was 15-20% faster for MoME but the same seeded run gave different
    # losses from run to run, and 3 of about 10 short runs stopped on a NaN loss; fp32 was identical
    # every time.
    epochs = {"pretrain": 20, "scratch": 16, "joint": 16}[schedule]
    lr = 1e-3 if schedule == "joint" else 1e-2
    return TrainConfig(model="cpu", epochs=epochs, iterations_per_epoch=25, batch_size=2,
                       patch_size=[32, 32, 32], initial_lr=lr, precision="32")


def _tiny(schedule: str) -> TrainConfig:
    lr = 1e-3 if schedule == "joint" else 1e-2
    return TrainConfig(model="tiny", epochs=2, iterations_per_epoch=3, batch_size=2, patch_size=[16, 16, 16],
                       initial_lr=lr)


_PRESETS = {"paper": _paper, "cpu": _cpu, "tiny": _tiny}
PRESET_DESCRIPTIONS = {
    "paper": "the paper (GPU): 128^3 patches, batch 2, 250 iterations/epoch; 1000 epochs stage 1, 800 otherwise",
    "cpu": "2 CPU cores: cpu network, 32^3 patches, batch 2, fp32, 25 iterations/epoch; 20 epochs stage 1, "
           "16 otherwise",
    "tiny": "tests: tiny network, 16^3 patches, batch 2, 2 epochs x 3 iterations",
}


def train_presets() -> list[str]:
    return list(_PRESETS)


def get_train_config(preset: str, schedule: str) -> TrainConfig:
    """The config of a training preset for one schedule (``pretrain``, ``scratch`` or ``joint``)."""
    if preset not in _PRESETS:
        raise ConfigError(f"unknown training preset {preset!r}; known presets: {', '.join(_PRESETS)}")
    _choice("schedule", schedule, SCHEDULES)
    return _PRESETS[preset](schedule)
