"""Training: nnU-Net defaults as a config, Dice + CE with deep supervision, MoME's curriculum loss,
patch sampling with nnU-Net's augmentation, a Lightning module, and the registry of trainable systems
(MoME's two stages, its ablations, the baselines). ``mome train --help`` is the command-line entry.
"""

from mome.training.config import TrainConfig, get_train_config, train_presets
from mome.training.losses import (CurriculumLoss, DeepSupervisedLoss, DiceCELoss, curriculum_weight,
                                  deep_supervision_weights, select_sample_experts)
from mome.training.systems import SYSTEMS, Member, PlanContext, SystemOptions, SystemSpec, get_system, register_system

__all__ = [
    "TrainConfig", "get_train_config", "train_presets", "CurriculumLoss", "DeepSupervisedLoss", "DiceCELoss",
    "curriculum_weight", "deep_supervision_weights", "select_sample_experts", "SYSTEMS", "Member", "PlanContext",
    "SystemOptions", "SystemSpec", "get_system", "register_system", "train_system",
]


def train_system(*args, **kwargs):
    """Train a registered system into a run folder (see :func:`mome.training.stages.train_system`)."""
    from mome.training.stages import train_system as _train

    return _train(*args, **kwargs)
