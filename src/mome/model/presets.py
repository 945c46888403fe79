"""Named architecture presets: ``paper`` (the released configuration), ``cpu`` and ``tiny``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mome.errors import ConfigError
from mome.model.config import MoMEConfig, UNetConfig


@dataclass(frozen=True)
class Preset:
    """A registered architecture: a name, a one-line description and a config factory."""

    name: str
    description: str
    make_config: Callable[[], MoMEConfig]


_REGISTRY: dict[str, Preset] = {}


def register_preset(name: str, description: str):
    """Decorator registering a function that returns a :class:`MoMEConfig`."""

    def deco(fn: Callable[[], MoMEConfig]) -> Callable[[], MoMEConfig]:
        if name in _REGISTRY:
            raise ConfigError(f"preset {name!r} is already registered")
        _REGISTRY[name] = Preset(name, description, fn)
        return fn

    return deco


def list_presets() -> list[Preset]:
    return list(_REGISTRY.values())


def get_preset_config(name: str) -> MoMEConfig:
    """The config of a registered preset; unknown names raise :class:`ConfigError` listing the known ones."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model preset {name!r}; known presets: {', '.join(_REGISTRY)}")
    return _REGISTRY[name].make_config()


def _unet(features: list[int], strides: list[int]) -> UNetConfig:
    n = len(features)
    return UNetConfig(
        features_per_stage=features,
        strides=strides,
        kernel_sizes=[3] * n,
        n_conv_per_stage=[2] * n,
        n_conv_per_stage_decoder=[2] * (n - 1),
    )


@register_preset("paper", "the paper / released MoME: 5 experts, 6 stages 32..320 features, gate 161 -> 10 channels")
def paper() -> MoMEConfig:
    return MoMEConfig(expert=_unet([32, 64, 128, 256, 320, 320], [1, 2, 2, 2, 2, 2]))


@register_preset("cpu", "2-core-trainable MoME: 5 experts, 5 stages 8..128 features (gate 41 -> 10 channels)")
def cpu() -> MoMEConfig:
    return MoMEConfig(expert=_unet([8, 16, 32, 64, 128], [1, 2, 2, 2, 2]))


@register_preset("tiny", "tests: 5 experts, 3 stages 4..16 features (inputs divisible by 4)")
def tiny() -> MoMEConfig:
    return MoMEConfig(expert=_unet([4, 8, 16], [1, 2, 2]))
