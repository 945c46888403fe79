"""Benchmark presets: which synthetic data, which training preset, which systems."""

from __future__ import annotations

from dataclasses import dataclass, field

from mome.errors import ConfigError

# Table 3's factors per ablation system (modality experts, hierarchical gating, curriculum)
ABLATION_COMPONENTS = {
    "mome": {"Modality experts": True, "Hierarchical gating": True, "Curriculum learning": True},
    "no-curriculum": {"Modality experts": True, "Hierarchical gating": True, "Curriculum learning": False},
    "basic-gate": {"Modality experts": True, "Hierarchical gating": False, "Curriculum learning": False},
    "random-experts": {"Modality experts": False, "Hierarchical gating": False, "Curriculum learning": False},
}


@dataclass(frozen=True)
class BenchmarkPreset:
    """One benchmark configuration.

    Attributes:
        name: preset name.
        synth: synthetic-data preset (``mome synth --preset``).
        train: training preset (``mome train --preset``).
        train_overrides: TrainConfig fields changed for every system (e.g. fewer epochs for ``quick``).
        systems: foundation-model systems and baselines (Tables 1, 2, Supplementary Table I).
        ablations: extra systems for Table 3 (``mome`` is its first column).
        reference: systems reported apart from the foundation models (the task-specific upper bound).
        precision: inference precision.
        patch_size: inference window: ``"whole"`` (one window over the padded volume) or ``None`` (the
            model's training patch as sliding window). ``quick`` and ``cpu`` use ``"whole"``: with the
            embedded cpu-preset MoME on one test image per task of the cpu benchmark it was 16x faster
            than 32^3 sliding windows (1.5 s vs 25 s per image) and its Dice to the labels was 0.031
            higher (0.286 vs 0.255; ``benchmarks/inference.py --model``, see docs/performance.md).
    """

    name: str
    synth: str
    train: str
    train_overrides: dict = field(default_factory=dict)
    systems: tuple[str, ...] = ("mome", "single")
    ablations: tuple[str, ...] = ()
    reference: tuple[str, ...] = ()
    precision: str = "fp32"
    patch_size: str | None = None


BENCHMARK_PRESETS: dict[str, BenchmarkPreset] = {
    "quick": BenchmarkPreset("quick", synth="quick", train="cpu",
                             train_overrides={"epochs": 4, "iterations_per_epoch": 12, "precision": "32"},
                             systems=("mome", "single", "sam-med3d"), patch_size="whole"),
    "cpu": BenchmarkPreset("cpu", synth="cpu", train="cpu",
                           systems=("mome", "single", "multitalent", "hermes", "sam-med3d", "task-specific"),
                           ablations=("no-curriculum", "basic-gate", "random-experts"),
                           reference=("task-specific",), patch_size="whole"),
    "paper": BenchmarkPreset("paper", synth="paper", train="paper",
                             systems=("mome", "single", "multitalent", "hermes", "sam-med3d", "task-specific"),
                             ablations=("no-curriculum", "basic-gate", "random-experts"),
                             reference=("task-specific",), precision="bf16"),
}


def get_benchmark_preset(name: str) -> BenchmarkPreset:
    if name not in BENCHMARK_PRESETS:
        raise ConfigError(f"unknown benchmark preset {name!r}; choose one of {', '.join(BENCHMARK_PRESETS)}")
    return BENCHMARK_PRESETS[name]
