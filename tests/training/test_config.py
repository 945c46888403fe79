"""TrainConfig: nnU-Net defaults, JSON round trip, presets, checks."""

from __future__ import annotations

import pytest

from mome.errors import ConfigError
from mome.training.config import TrainConfig, get_train_config, train_presets


def test_defaults_are_nnunets():
    cfg = TrainConfig()
    assert (cfg.momentum, cfg.nesterov, cfg.weight_decay, cfg.lr_exponent) == (0.99, True, 3e-5, 0.9)
    assert (cfg.iterations_per_epoch, cfg.oversample_foreground, cfg.grad_clip_norm) == (250, 0.33, 12.0)
    assert (cfg.dice_weight, cfg.ce_weight, cfg.num_workers, cfg.precision) == (1.0, 1.0, 0, "32")


def test_json_round_trip():
    cfg = TrainConfig(epochs=3, patch_size=[32, 32, 16], spacing_mm=[2, 2, 2], precision="bf16-mixed",
                      sampling="task", grad_clip_scope="gate", seed=7)
    again = TrainConfig.from_json(cfg.to_json())
    assert again == cfg
    assert again.spacing_mm == [2.0, 2.0, 2.0]
    assert TrainConfig(patch_size=48).patch_size == [48, 48, 48]


def test_paper_preset_matches_the_paper():
    for schedule, epochs, lr in (("pretrain", 1000, 1e-2), ("scratch", 800, 1e-2), ("joint", 800, 1e-3)):
        cfg = get_train_config("paper", schedule)
        assert (cfg.epochs, cfg.iterations_per_epoch, cfg.batch_size) == (epochs, 250, 2)
        assert cfg.patch_size == [128, 128, 128] and cfg.initial_lr == lr and cfg.model == "paper"
    assert set(train_presets()) == {"paper", "cpu", "tiny"}


def test_replace_ignores_none_and_checks_values():
    cfg = get_train_config("tiny", "joint")
    assert cfg.replace(epochs=None, seed=3).seed == 3
    for bad in ({"precision": "fp8"}, {"epochs": 0}, {"sampling": "random"}, {"patch_size": [16, 16]},
                {"grad_clip_scope": "experts"}, {"oversample_foreground": 1.5},
                {"intensity_shift": -0.1}, {"curriculum_power": 0.0}, {"curriculum_span": 0.0},
                {"curriculum_span": 1.2}):
        with pytest.raises(ConfigError):
            cfg.replace(**bad)
    with pytest.raises(ConfigError, match="no fields"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ConfigError, match="unknown training preset"):
        get_train_config("huge", "joint")
