"""Multi-Talent (Ulrich et al., MICCAI 2023) adapted to brain lesions, as a comparator of the MoME paper.

One nnU-Net ``PlainConvUNet`` is trained on the union of the seen datasets with one output head per
dataset; each sample's loss is computed on its own dataset's head only, so conflicting label definitions
(BraTS's T1ce label is the tumour core, its other modalities the whole tumour; WMH vs MS lesions...) do
not fight over one output. At inference the head of the image's dataset is used; an image from a dataset
that was not trained has no head, so the model refuses it (the paper's Table 2 leaves Multi-Talent out
for unseen datasets for the same reason).

Design choices (documented in the README's baselines section):

- Heads are the output rows of nnU-Net's 1x1x1 segmentation convolutions at every deep-supervision level
  (the backbone is built with ``n_datasets x channels_per_head`` outputs): row block ``d`` is dataset
  ``d``'s head. This is the same function as one separate 1x1x1 convolution per dataset (as in the
  released Multi-Talent code) in one kernel call, and a head that no sample of a batch selects gets
  exactly zero gradient.
- ``head="sigmoid"`` (default, the MICCAI 2023 paper's variant): one sigmoid channel per dataset, trained
  with BCE + Dice. It is exposed as two-class logits ``[0, z]``: softmax over them is ``sigmoid(z)``, so
  nnU-Net's DC+CE loss on them *is* BCE + soft Dice on ``sigmoid(z)``, and the rest of mome (predictor,
  evaluation) reads it like any two-class network. ``head="softmax"``: a two-class softmax head per
  dataset (what the released nnU-Net v2 Multi-Talent trainer builds for non-region datasets).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
import dataclasses

import torch
from torch import nn

from mome.errors import ConfigError, ShapeError
from mome.model.baselines.conditioning import ConditionedNetwork, NameOrNames, lookup_indices
from mome.model.config import UNetConfig
from mome.model.experts import ExpertUNet, check_input

HEAD_TYPES = ("sigmoid", "softmax")


@dataclass
class MultiTalentConfig:
    """A Multi-Talent network: one U-Net backbone, one output head per training dataset.

    Attributes:
        unet: the backbone (same architecture as a MoME expert; ``num_classes`` must be 2: background and
            lesion; the head channels are derived from ``head``).
        datasets: the training datasets, one head each, in head order (names are matched
            case-insensitively at inference).
        head: ``sigmoid`` (one channel per dataset, BCE + Dice; the paper's variant) or ``softmax``
            (two channels per dataset, CE + Dice).
    """

    unet: UNetConfig = field(default_factory=UNetConfig)
    datasets: list[str] = field(default_factory=list)
    head: str = "sigmoid"

    def __post_init__(self) -> None:
        if isinstance(self.unet, dict):
            self.unet = UNetConfig(**{k: v for k, v in self.unet.items() if k != "kind"})
        self.datasets = [str(d) for d in self.datasets]
        if not self.datasets:
            raise ConfigError("Multi-Talent needs at least one dataset (one output head per dataset)")
        if len({d.lower() for d in self.datasets}) != len(self.datasets):
            raise ConfigError(f"Multi-Talent dataset names must be unique (case-insensitive): {self.datasets}")
        if self.head not in HEAD_TYPES:
            raise ConfigError(f"Multi-Talent head must be one of {HEAD_TYPES}, got {self.head!r}")
        if self.unet.num_classes != 2:
            raise ConfigError("Multi-Talent heads segment one lesion class: the backbone config needs "
                              f"num_classes=2 (background, lesion), got {self.unet.num_classes}")
        if self.unet.input_channels != 1:
            raise ConfigError("Multi-Talent takes one image channel (input_channels=1)")

    @property
    def n_datasets(self) -> int:
        return len(self.datasets)

    @property
    def channels_per_head(self) -> int:
        return 1 if self.head == "sigmoid" else 2

    def backbone_config(self) -> UNetConfig:
        """The U-Net that is actually built: every head's channels stacked as its outputs."""
        return self.unet.replace(num_classes=self.n_datasets * self.channels_per_head)

    def replace(self, **changes) -> "MultiTalentConfig":
        return dataclasses.replace(self, **changes)


class MultiTalentNet(nn.Module):
    """Multi-Talent: a ``PlainConvUNet`` with one output head per dataset.

    Args:
        config: the architecture and the datasets (one head each).
        deep_supervision: return every decoder level (training) or only full resolution (inference).
    """

    def __init__(self, config: MultiTalentConfig, deep_supervision: bool = True):
        super().__init__()
        self.config = config
        self.net = ExpertUNet(config.backbone_config(), deep_supervision)

    @property
    def datasets(self) -> list[str]:
        return list(self.config.datasets)

    @property
    def deep_supervision(self) -> bool:
        return self.net.deep_supervision

    def set_deep_supervision(self, enabled: bool) -> None:
        self.net.set_deep_supervision(enabled)

    def dataset_indices(self, dataset: NameOrNames, batch: int, device: torch.device | None = None) -> torch.Tensor:
        """(batch,) head indices of ``dataset`` (one name, one name per sample, or indices).

        Raises:
            InputError: for a dataset without a head (e.g. an unseen dataset), naming the known ones.
        """
        return lookup_indices(
            dataset, self.config.datasets, what="dataset", batch=batch,
            device=device or torch.device("cpu"),
            unknown_hint="Multi-Talent has one output head per training dataset and cannot segment images "
                         "of other datasets; use MoME or the single U-Net for them.")

    def forward(self, x: torch.Tensor, dataset: NameOrNames | None = None) -> list[torch.Tensor]:
        """Segment ``x`` (B, 1, X, Y, Z).

        Args:
            x: the image batch.
            dataset: ``None`` for every head, or the dataset of the images (one name, one per sample, or
                head indices): then each sample gets its own dataset's head.

        Returns:
            Per deep-supervision level, highest resolution first: with ``dataset``, two-class logits
            (B, 2, X, Y, Z) of the selected heads (``[0, z]`` for sigmoid heads); without, every head's
            raw outputs (B, n_datasets, channels_per_head, X, Y, Z).
        """
        check_input(x, self.config.unet)
        levels = self.net.forward_with_features(x)[0]
        heads = [lvl.unflatten(1, (self.config.n_datasets, self.config.channels_per_head)) for lvl in levels]
        if dataset is None:
            return heads
        idx = self.dataset_indices(dataset, x.shape[0], x.device)
        return [select_heads(h, idx, self.config.head) for h in heads]

    def conditioned(self, dataset: str) -> ConditionedNetwork:
        """This network with the dataset fixed: ``model(x)`` -> two-class logits (for the Predictor)."""
        self.dataset_indices(dataset, 1)  # refuse an unknown dataset now, not at the first window
        return ConditionedNetwork(self, dataset=dataset)


def select_heads(heads: torch.Tensor, index: torch.Tensor, head: str) -> torch.Tensor:
    """Pick head ``index[b]`` for sample ``b`` of (B, D, K, ...) outputs -> two-class logits (B, 2, ...).

    Only the selected rows enter the graph, so the other heads receive no gradient from a loss on the
    result. A sigmoid head's logit ``z`` becomes ``[0, z]`` (softmax of it is ``sigmoid(z)``).
    """
    if heads.ndim < 3 or index.shape != (heads.shape[0],):
        raise ShapeError(f"expected heads (B, D, K, ...) and one index per sample, got {tuple(heads.shape)} "
                         f"and {tuple(index.shape)}")
    chosen = heads[torch.arange(heads.shape[0], device=heads.device), index.to(heads.device)]
    if head == "sigmoid":
        return torch.cat([torch.zeros_like(chosen), chosen], dim=1)
    return chosen


def multitalent_config(unet: UNetConfig, datasets: Sequence[str], head: str = "sigmoid") -> MultiTalentConfig:
    """A Multi-Talent config whose backbone is ``unet`` (e.g. ``get_preset_config("cpu").expert``)."""
    return MultiTalentConfig(unet=unet.replace(num_classes=2, input_channels=1), datasets=list(datasets),
                             head=head)
