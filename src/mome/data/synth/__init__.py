"""Synthetic multi-modality brain-lesion benchmark: MNI152 anatomy, lesion models, contrast, scanners."""

from mome.data.synth.datasets import DATASETS, SYNTH_PRESETS, DatasetSpec, SynthPreset, get_synth_preset
from mome.data.synth.generate import generate_benchmark

__all__ = ["DATASETS", "SYNTH_PRESETS", "DatasetSpec", "SynthPreset", "get_synth_preset", "generate_benchmark"]
