"""Typed, JSON-serialisable architecture configs.

A config is plain data (numbers, lists, strings): it is saved next to every weights file and rebuilds
the exact network. The op classes of nnU-Net's ``PlainConvUNet`` are fixed here (Conv3d with bias ->
InstanceNorm3d(affine, eps 1e-5) -> LeakyReLU(0.01)), as in nnU-Net 3d_fullres and the released MoME.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from mome.errors import ConfigError

PAPER_MODALITIES = ("T1", "T2", "T1ce", "FLAIR", "DWI")
GATE_TYPES = ("hierarchical", "basic")
GATE_ACTIVATIONS = ("identity", "softmax")


@dataclass
class UNetConfig:
    """One nnU-Net ``PlainConvUNet``.

    Attributes:
        features_per_stage: output channels of each encoder stage (its length is the number of stages).
        strides: per-stage stride (first stage 1); an int means isotropic.
        kernel_sizes: per-stage convolution kernel; an int means isotropic.
        n_conv_per_stage: convolutions per encoder stage.
        n_conv_per_stage_decoder: convolutions per decoder stage (one fewer stage than the encoder).
        input_channels: image channels (1 for an expert, 1 + N * features_per_stage[0] for a gate).
        num_classes: output channels per deep-supervision level.
        conv_bias: nnU-Net uses bias=True with InstanceNorm.
        norm_eps, leaky_slope: InstanceNorm epsilon and LeakyReLU negative slope.
    """

    features_per_stage: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 320, 320])
    strides: list[Any] = field(default_factory=lambda: [1, 2, 2, 2, 2, 2])
    kernel_sizes: list[Any] = field(default_factory=lambda: [3, 3, 3, 3, 3, 3])
    n_conv_per_stage: list[int] = field(default_factory=lambda: [2, 2, 2, 2, 2, 2])
    n_conv_per_stage_decoder: list[int] = field(default_factory=lambda: [2, 2, 2, 2, 2])
    input_channels: int = 1
    num_classes: int = 2
    conv_bias: bool = True
    norm_eps: float = 1e-5
    leaky_slope: float = 0.01

    def __post_init__(self) -> None:
        # typed and bounded (a model folder's config.json is user input): the offending key is named
        for name in ("features_per_stage", "strides", "kernel_sizes", "n_conv_per_stage", "n_conv_per_stage_decoder"):
            if not isinstance(getattr(self, name), (list, tuple)):
                raise ConfigError(f"UNetConfig.{name} must be a list, got {getattr(self, name)!r}")
        n = len(self.features_per_stage)
        if n < 2 or n > MAX_STAGES:
            raise ConfigError(f"UNetConfig.features_per_stage: a U-Net needs 2 to {MAX_STAGES} stages, got {n}")
        _ints("features_per_stage", self.features_per_stage, 1, MAX_FEATURES)
        _ints("n_conv_per_stage", self.n_conv_per_stage, 1, 8)
        _ints("n_conv_per_stage_decoder", self.n_conv_per_stage_decoder, 1, 8)
        for name, hi in (("strides", 4), ("kernel_sizes", 7)):
            for v in getattr(self, name):
                _ints(name, list(v) if isinstance(v, (list, tuple)) else [v], 1, hi)
        _ints("input_channels", [self.input_channels], 1, 4096)
        _ints("num_classes", [self.num_classes], 1, 256)
        for name in ("norm_eps", "leaky_slope"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v < 1):
                raise ConfigError(f"UNetConfig.{name} must be a number in [0, 1), got {v!r}")
        for name in ("strides", "kernel_sizes", "n_conv_per_stage"):
            if len(getattr(self, name)) != n:
                raise ConfigError(f"UNetConfig.{name} needs {n} entries (one per stage), got {getattr(self, name)}")
        if len(self.n_conv_per_stage_decoder) != n - 1:
            raise ConfigError(f"UNetConfig.n_conv_per_stage_decoder needs {n - 1} entries, got "
                              f"{self.n_conv_per_stage_decoder}")
        if self.input_channels < 1 or self.num_classes < 1:
            raise ConfigError("input_channels and num_classes must be >= 1")

    @property
    def n_stages(self) -> int:
        return len(self.features_per_stage)

    def stride_triples(self) -> list[tuple[int, int, int]]:
        """Per-stage strides as (x, y, z) triples."""
        return [_triple(s) for s in self.strides]

    def divisor(self) -> tuple[int, int, int]:
        """Spatial sizes must be multiples of this (the product of strides per axis)."""
        d = [1, 1, 1]
        for s in self.stride_triples():
            d = [a * b for a, b in zip(d, s)]
        return tuple(d)

    def n_levels(self) -> int:
        """Number of deep-supervision outputs (decoder stages)."""
        return self.n_stages - 1

    def replace(self, **changes) -> "UNetConfig":
        return dataclasses.replace(self, **changes)


@dataclass
class MoMEConfig:
    """A Mixture of Modality Experts: N expert U-Nets and a gate U-Net of the same topology.

    Attributes:
        modalities: one expert per name, in order (the paper's five by default).
        expert: the expert architecture (``input_channels`` 1).
        gate_type: ``hierarchical`` (one weight map per level from the gate's own decoder levels) or
            ``basic`` (one full-resolution map, downsampled to every level; the paper's ablation).
        gate_activation: ``identity`` (raw weights, as in the released code and official weights) or
            ``softmax`` over experts (weights in [0, 1] summing to 1 per voxel and class).
    """

    modalities: list[str] = field(default_factory=lambda: list(PAPER_MODALITIES))
    expert: UNetConfig = field(default_factory=UNetConfig)
    gate_type: str = "hierarchical"
    gate_activation: str = "identity"

    def __post_init__(self) -> None:
        if isinstance(self.expert, dict):
            self.expert = UNetConfig(**self.expert)
        if not isinstance(self.expert, UNetConfig):
            raise ConfigError(f"MoMEConfig.expert must be a UNetConfig, got {self.expert!r}")
        if (not isinstance(self.modalities, (list, tuple)) or len(self.modalities) > 64
                or not all(isinstance(m, str) and m.strip() for m in self.modalities)):
            raise ConfigError(f"MoMEConfig.modalities must be a list of up to 64 names, got {self.modalities!r}")
        if len(self.modalities) < 1:
            raise ConfigError("MoME needs at least one modality expert")
        if len(set(m.lower() for m in self.modalities)) != len(self.modalities):
            raise ConfigError(f"modality names must be unique (case-insensitive): {self.modalities}")
        if self.gate_type not in GATE_TYPES:
            raise ConfigError(f"gate_type must be one of {GATE_TYPES}, got {self.gate_type!r}")
        if self.gate_activation not in GATE_ACTIVATIONS:
            raise ConfigError(f"gate_activation must be one of {GATE_ACTIVATIONS}, got {self.gate_activation!r}")
        if self.expert.input_channels != 1:
            raise ConfigError("experts take one image channel (input_channels=1)")

    @property
    def n_experts(self) -> int:
        return len(self.modalities)

    @property
    def num_classes(self) -> int:
        return self.expert.num_classes

    def gate_config(self) -> UNetConfig:
        """The gate: expert topology, input image + every expert's first-stage features, N x C outputs."""
        return self.expert.replace(
            input_channels=1 + self.n_experts * self.expert.features_per_stage[0],
            num_classes=self.n_experts * self.expert.num_classes,
        )

    def replace(self, **changes) -> "MoMEConfig":
        return dataclasses.replace(self, **changes)


#: bounds of a U-Net config read from a file (far above any real model; below what exhausts memory)
MAX_STAGES = 8
MAX_FEATURES = 2048


def _ints(name: str, values, lo: int, hi: int) -> None:
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ConfigError(f"UNetConfig.{name} holds {v!r}; expected integers from {lo} to {hi}")


def config_to_dict(cfg) -> dict:
    """Dataclass config -> plain dict (JSON-ready), tagged with its kind."""
    return {"kind": type(cfg).__name__, **dataclasses.asdict(cfg)}


def config_from_dict(d: dict):
    """Inverse of :func:`config_to_dict`; unknown kinds or fields raise :class:`ConfigError`."""
    d = dict(d)
    kind = d.pop("kind", None)
    classes = _config_classes()
    if kind not in classes:
        raise ConfigError(f"unknown config kind {kind!r}; expected one of {sorted(classes)}")
    cls = classes[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"{kind} has no fields {sorted(unknown)}")
    if cls is MoMEConfig and isinstance(d.get("expert"), dict):
        try:
            d["expert"] = UNetConfig(**d["expert"])
        except TypeError as exc:
            raise ConfigError(f"invalid expert UNetConfig: {exc}") from exc
    for key, sub in list(d.items()):
        if isinstance(sub, dict) and "kind" in sub:
            d[key] = config_from_dict(sub)
    try:
        return cls(**d)
    except TypeError as exc:
        raise ConfigError(f"invalid {kind}: {exc}") from exc


def register_config_class(cls) -> type:
    """Make another dataclass config (e.g. a baseline's) loadable by :func:`config_from_dict`."""
    _EXTRA_CLASSES[cls.__name__] = cls
    return cls


_EXTRA_CLASSES: dict[str, type] = {}


def _config_classes() -> dict[str, type]:
    return {"UNetConfig": UNetConfig, "MoMEConfig": MoMEConfig, **_EXTRA_CLASSES}


def config_to_json(cfg) -> str:
    return json.dumps(config_to_dict(cfg), indent=2)


def config_from_json(text: str):
    try:
        return config_from_dict(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config is not valid JSON: {exc}") from exc


def _triple(v) -> tuple[int, int, int]:
    if isinstance(v, int):
        return (v, v, v)
    v = tuple(int(a) for a in v)
    if len(v) != 3:
        raise ConfigError(f"expected an int or 3 ints, got {v}")
    return v
