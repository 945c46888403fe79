"""``mome benchmark``: synthesise, train every system, predict, evaluate, and write the paper's tables."""

from mome.benchmark.presets import BENCHMARK_PRESETS, BenchmarkPreset, get_benchmark_preset
from mome.benchmark.runner import run_benchmark

__all__ = ["BENCHMARK_PRESETS", "BenchmarkPreset", "get_benchmark_preset", "run_benchmark"]
