"""Synthetic multi-modality brain-lesion benchmark: MNI152 anatomy, lesion models, contrast, scanners.

Entry points: :func:`generate_benchmark` (the ``mome synth`` command) and :func:`synth_subject`
(one subject in memory).
"""

from mome.data.synth.datasets import (
    DATASET_NAMES, DATASETS, SYNTH_PRESETS, DatasetSpec, SynthConfig, make_synth_config,
)
from mome.data.synth.generate import generate_benchmark
from mome.data.synth.report import lesion_cnr
from mome.data.synth.scanner import ScannerProfile
from mome.data.synth.subject import SynthSubject, synth_subject

__all__ = [
    "DATASETS", "DATASET_NAMES", "SYNTH_PRESETS", "DatasetSpec", "ScannerProfile", "SynthConfig", "SynthSubject",
    "generate_benchmark", "lesion_cnr", "make_synth_config", "synth_subject",
]
