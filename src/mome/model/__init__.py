"""The MoME network: experts (nnU-Net PlainConvUNet), gates, eq. 1 fusion, configs and presets."""

from mome.model.config import MoMEConfig, UNetConfig, PAPER_MODALITIES
from mome.model.experts import ExpertUNet
from mome.model.gating import BasicGate, HierarchicalGate
from mome.model.mome import MoME, MoMEOutput, fuse
from mome.model.presets import get_preset_config, list_presets, register_preset


_BUILDERS: dict[type, object] = {MoMEConfig: MoME, UNetConfig: ExpertUNet}


def register_builder(config_cls: type, builder) -> None:
    """Let :func:`build_model` build another network family (e.g. a baseline) from its config class."""
    _BUILDERS[config_cls] = builder


def build_model(config):
    """Build the network a config describes (MoME, a single U-Net, or a registered baseline)."""
    from mome.errors import ConfigError

    builder = _BUILDERS.get(type(config))
    if builder is None:
        raise ConfigError(f"no network is registered for config type {type(config).__name__}")
    return builder(config)


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "MoMEConfig", "UNetConfig", "PAPER_MODALITIES", "ExpertUNet", "BasicGate", "HierarchicalGate",
    "MoME", "MoMEOutput", "fuse", "register_builder", "get_preset_config", "list_presets", "register_preset", "build_model",
    "count_parameters",
]

# registers the Multi-Talent and Hermes baselines' configs and builders (build_model / load_model)
import mome.model.baselines  # noqa: E402,F401
