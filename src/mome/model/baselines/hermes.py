"""Hermes (Gao et al., "Training like a medical resident", CVPR 2024) adapted to brain lesions.

As in the MoME paper, the imaging modality is the prior knowledge Hermes injects: an nnU-Net-style U-Net
(the experts' ``PlainConvUNet`` topology, ops and deep supervision) whose deeper encoder stages and the
decoder stages at the same resolutions exchange information with learnable *task* and *modality* tokens
by two-way cross-attention (:mod:`mome.model.baselines.hermes_blocks`). The lesion mask comes from the
task tokens: their posteriors from every fusion layer are mapped to a weight vector whose dot product with
each voxel's decoder features is the lesion logit (Hermes's dynamic head, here at every deep-supervision
level). An auxiliary head classifies the modality from the modality posteriors (Hermes weights its
cross-entropy 0.01).

Hermes needs the modality and the task of every image, at training and at inference.

What a *task* is (``HermesConfig.task_key``): by default the lesion type (tumour, WMH, MS, acute or
chronic stroke). Hermes's task prior says *what to segment*, and the lesion type is the only such prior
that also exists for an unseen dataset, which the paper's Table 2 needs (it reports Hermes on the unseen
datasets). ``dataset`` or ``dataset_modality`` (the paper's evaluation task) are the alternatives; with
them an unseen dataset has no task token and is refused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
from dynamic_network_architectures.building_blocks.simple_conv_blocks import StackedConvBlocks
from torch import nn

from mome.data.constants import LESION_TYPES, canonical_modality
from mome.errors import ConfigError, DataError
from mome.model.baselines.conditioning import ConditionedNetwork, NameOrNames, lookup_indices
from mome.model.baselines.hermes_blocks import DynamicMaskHead, ModalityClassifier, PriorFusionLayer
from mome.model.config import PAPER_MODALITIES, UNetConfig
from mome.model.experts import check_input

TASK_KEYS = ("lesion_type", "dataset", "dataset_modality")
DEFAULT_TASKS = tuple(t for t in LESION_TYPES if t != "none")


@dataclass
class HermesConfig:
    """A Hermes network.

    Attributes:
        unet: the U-Net backbone (an expert's architecture; ``num_classes`` must be 2).
        modalities: the modality vocabulary (one set of modality tokens each).
        tasks: the task vocabulary (one task token each); see ``task_key``.
        task_key: what a task name is: ``lesion_type``, ``dataset`` or ``dataset_modality``
            (``"<dataset>/<modality>"``); :meth:`task_name` derives it from a case.
        fusion_stages: how many of the deepest encoder stages (bottleneck included) fuse with the priors;
            the decoder fuses at the same resolutions except the bottleneck's (Hermes: 3).
        fusion_blocks: attention blocks per fusion layer (Hermes: 2).
        bottleneck_fusion_blocks: attention blocks at the bottleneck (Hermes: 4).
        modality_tokens: tokens per modality (Hermes: 10).
        head_dim: channels per attention head (Hermes: 32).
        mlp_ratio: feed-forward width in multiples of the channels (Hermes: 4).
    """

    unet: UNetConfig = field(default_factory=UNetConfig)
    modalities: list[str] = field(default_factory=lambda: list(PAPER_MODALITIES))
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    task_key: str = "lesion_type"
    fusion_stages: int = 3
    fusion_blocks: int = 2
    bottleneck_fusion_blocks: int = 4
    modality_tokens: int = 10
    head_dim: int = 32
    mlp_ratio: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.unet, dict):
            self.unet = UNetConfig(**{k: v for k, v in self.unet.items() if k != "kind"})
        self.modalities = [str(m) for m in self.modalities]
        self.tasks = [str(t) for t in self.tasks]
        for name, values in (("modalities", self.modalities), ("tasks", self.tasks)):
            if not values:
                raise ConfigError(f"Hermes needs at least one entry in {name}")
            if len({v.lower() for v in values}) != len(values):
                raise ConfigError(f"Hermes {name} must be unique (case-insensitive): {values}")
        if self.task_key not in TASK_KEYS:
            raise ConfigError(f"Hermes task_key must be one of {TASK_KEYS}, got {self.task_key!r}")
        if not 1 <= self.fusion_stages <= self.unet.n_stages:
            raise ConfigError(f"Hermes fusion_stages must be in [1, {self.unet.n_stages}] (the backbone's "
                              f"stages), got {self.fusion_stages}")
        for name in ("fusion_blocks", "bottleneck_fusion_blocks", "modality_tokens", "head_dim", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise ConfigError(f"Hermes {name} must be >= 1, got {getattr(self, name)}")
        if self.unet.num_classes != 2 or self.unet.input_channels != 1:
            raise ConfigError("Hermes segments one lesion class from one image channel: the backbone config "
                              "needs num_classes=2 and input_channels=1")

    def encoder_fusion_stages(self) -> list[int]:
        """Encoder stage indices followed by a fusion layer (the deepest ``fusion_stages``)."""
        n = self.unet.n_stages
        return list(range(n - self.fusion_stages, n))

    def decoder_fusion_levels(self) -> list[int]:
        """Resolution levels (0 = full) whose decoder output is fused: the encoder's, minus the bottleneck."""
        return [s for s in self.encoder_fusion_stages() if s < self.unet.n_stages - 1]

    def task_name(self, *, dataset: str, modality: str, lesion_type: str) -> str:
        """The task of an image with these facts, per ``task_key``."""
        if self.task_key == "lesion_type":
            return lesion_type
        if self.task_key == "dataset":
            return dataset
        return f"{dataset}/{modality}"

    def replace(self, **changes) -> "HermesConfig":
        return dataclasses.replace(self, **changes)


@dataclass
class HermesOutput:
    """What :meth:`HermesNet.forward` returns.

    Attributes:
        logits: two-class lesion logits ``[0, z]`` per deep-supervision level, highest resolution first,
            each (B, 2, X, Y, Z); softmax gives ``sigmoid(z)``.
        modality_logits: (B, n_modalities) logits of the auxiliary modality classifier.
    """

    logits: list[torch.Tensor]
    modality_logits: torch.Tensor


class HermesNet(nn.Module):
    """Hermes on nnU-Net's ``PlainConvUNet`` blocks; ``forward(x, modality=..., task=...)``.

    Args:
        config: the architecture and vocabularies.
        deep_supervision: return every decoder level (training) or only full resolution (inference).
    """

    def __init__(self, config: HermesConfig, deep_supervision: bool = True):
        super().__init__()
        self.config = config
        self._deep_supervision = bool(deep_supervision)
        u = config.unet
        n = u.n_stages
        feats = list(u.features_per_stage)
        ops = dict(conv_bias=u.conv_bias, norm_op=nn.InstanceNorm3d,
                   norm_op_kwargs={"eps": u.norm_eps, "affine": True}, nonlin=nn.LeakyReLU,
                   nonlin_kwargs={"negative_slope": u.leaky_slope, "inplace": True})
        kernels = [list(_triple(k)) for k in u.kernel_sizes]
        strides = [list(s) for s in u.stride_triples()]
        self.encoder = PlainConvEncoder(1, n, feats, nn.Conv3d, kernels, strides, list(u.n_conv_per_stage),
                                        return_skips=True, **ops)
        # the decoder of nnU-Net's UNetDecoder without its 1x1 segmentation layers (the masks come from
        # the task tokens)
        self.transpconvs = nn.ModuleList(
            nn.ConvTranspose3d(feats[n - s], feats[n - s - 1], strides[n - s], strides[n - s], bias=u.conv_bias)
            for s in range(1, n))
        self.decoder_stages = nn.ModuleList(
            StackedConvBlocks(u.n_conv_per_stage_decoder[s - 1], nn.Conv3d, 2 * feats[n - s - 1],
                              feats[n - s - 1], kernels[n - s - 1], 1, **ops)
            for s in range(1, n))
        self.apply(PlainConvUNet.initialize)

        n_t, n_m, n_l = len(config.tasks), len(config.modalities), config.modality_tokens

        def fusion(stage: int) -> PriorFusionLayer:
            blocks = config.bottleneck_fusion_blocks if stage == n - 1 else config.fusion_blocks
            return PriorFusionLayer(feats[stage], n_t, n_m, n_l, blocks, config.head_dim, config.mlp_ratio)

        self.encoder_fusion = nn.ModuleDict({str(s): fusion(s) for s in config.encoder_fusion_stages()})
        self.decoder_fusion = nn.ModuleDict({str(s): fusion(s) for s in config.decoder_fusion_levels()})
        token_dim = sum(feats[s] for s in config.encoder_fusion_stages() + config.decoder_fusion_levels())
        self.mask_heads = nn.ModuleList(DynamicMaskHead(token_dim, feats[level]) for level in range(n - 1))
        self.modality_classifier = ModalityClassifier(token_dim, n_m)

    @property
    def deep_supervision(self) -> bool:
        return self._deep_supervision

    def set_deep_supervision(self, enabled: bool) -> None:
        """On for training (all levels), off for inference (only full resolution is computed)."""
        self._deep_supervision = bool(enabled)

    def modality_indices(self, modality: NameOrNames | None, batch: int,
                         device: torch.device | None = None) -> torch.Tensor:
        """(batch,) modality indices; names may use common aliases (``t1c``, ``t2-flair``...)."""
        return lookup_indices(_canonical(modality), self.config.modalities, what="modality", batch=batch,
                              device=device or torch.device("cpu"),
                              unknown_hint="Hermes has modality tokens only for these modalities.")

    def task_indices(self, task: NameOrNames | None, batch: int, device: torch.device | None = None) -> torch.Tensor:
        """(batch,) task indices (task names per ``config.task_key``)."""
        return lookup_indices(task, self.config.tasks, what=f"task ({self.config.task_key})", batch=batch,
                              device=device or torch.device("cpu"),
                              unknown_hint="Hermes has task tokens only for the tasks it was built with.")

    def forward(self, x: torch.Tensor, modality: NameOrNames | None = None,
                task: NameOrNames | None = None) -> HermesOutput:
        """Segment ``x`` (B, 1, X, Y, Z) of the given modality and task (both required).

        Args:
            x: the image batch.
            modality: one name for the batch, one per sample, or indices into ``config.modalities``.
            task: likewise, into ``config.tasks``.

        Raises:
            InputError: a missing or unknown modality or task.
            ShapeError: a badly shaped ``x``.
        """
        check_input(x, self.config.unet)
        b = x.shape[0]
        mod = self.modality_indices(modality, b, x.device)
        tsk = self.task_indices(task, b, x.device)
        task_tokens, modality_tokens = [], []

        def fuse(layer: PriorFusionLayer, feats: torch.Tensor) -> torch.Tensor:
            feats, t, m = layer(feats, tsk, mod)
            task_tokens.append(t)
            modality_tokens.append(m)
            return feats

        skips = []
        for i, stage in enumerate(self.encoder.stages):
            x = stage(x)
            if str(i) in self.encoder_fusion:
                x = fuse(self.encoder_fusion[str(i)], x)
            skips.append(x)
        n = len(skips)
        levels: list[torch.Tensor] = [skips[0]] * (n - 1)
        for s, (up, conv) in enumerate(zip(self.transpconvs, self.decoder_stages)):
            level = n - 2 - s
            x = conv(torch.cat([up(x), skips[level]], dim=1))
            if str(level) in self.decoder_fusion:
                x = fuse(self.decoder_fusion[str(level)], x)
            levels[level] = x
        task_vec = torch.cat(task_tokens, dim=-1).squeeze(1)
        used = range(n - 1) if self._deep_supervision else range(1)
        logits = []
        for level in used:
            z = self.mask_heads[level](task_vec, levels[level])
            logits.append(torch.cat([torch.zeros_like(z), z], dim=1))
        return HermesOutput(logits, self.modality_classifier(torch.cat(modality_tokens, dim=-1)))

    def conditioned(self, modality: str, task: str) -> ConditionedNetwork:
        """This network with modality and task fixed: ``model(x)`` -> two-class logits (for the Predictor)."""
        self.modality_indices(modality, 1)  # refuse unknown names now, not at the first window
        self.task_indices(task, 1)
        return ConditionedNetwork(self, modality=modality, task=task)


def _canonical(modality: NameOrNames | None) -> NameOrNames | None:
    """Map modality aliases to mome's canonical names; leave unknown names for the lookup to refuse."""
    def one(name):
        try:
            return canonical_modality(name)
        except DataError:
            return name

    if isinstance(modality, str):
        return one(modality)
    if modality is None or isinstance(modality, torch.Tensor):
        return modality
    return [one(m) for m in modality]


def _triple(v) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(v)
