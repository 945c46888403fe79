"""The synthetic benchmark's dataset structure (paper Supplementary Table II) and size presets."""

from __future__ import annotations

from dataclasses import dataclass, field

from mome.data.synth.contrast import ScannerProfile
from mome.errors import ConfigError


@dataclass(frozen=True)
class DatasetSpec:
    """One synthetic dataset.

    Attributes:
        name: dataset name (a task is dataset x modality).
        lesion_type: one of mome.data.constants.LESION_TYPES.
        model: lesion model (``glioma``, ``wmh``, ``ms``, ``acute_stroke``, ``chronic_stroke``, ``wmh_mix``).
        modalities: imaged modalities (one case each per subject).
        seen: False for the held-out generalisation datasets.
        profile: scanner effects.
        atrophy: 0..1 ventricle/sulcal enlargement (older cohorts).
        core_label_on: modalities whose label is the tumour core (BraTS T1ce) instead of the whole lesion.
    """

    name: str
    lesion_type: str
    model: str
    modalities: tuple[str, ...]
    seen: bool = True
    profile: ScannerProfile = field(default_factory=ScannerProfile)
    atrophy: float = 0.0
    core_label_on: tuple[str, ...] = ()


_UNSEEN = ScannerProfile(noise=(0.06, 0.08), bias=(0.10, 0.15), blur_mm=(1.0, 1.6), gamma=(0.72, 0.82))

DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec("BraTS", "tumour", "glioma", ("T1", "T1ce", "T2", "FLAIR"), core_label_on=("T1ce",),
                profile=ScannerProfile(noise=(0.02, 0.04), blur_mm=(0.3, 1.0))),
    DatasetSpec("ATLAS", "stroke_chronic", "chronic_stroke", ("T1",),
                profile=ScannerProfile(noise=(0.03, 0.05), bias=(0.04, 0.10))),
    DatasetSpec("ISLES", "stroke_acute", "acute_stroke", ("DWI",),
                profile=ScannerProfile(noise=(0.04, 0.06), blur_mm=(0.6, 1.2))),
    DatasetSpec("WMH", "wmh", "wmh", ("T1", "FLAIR"), atrophy=0.6,
                profile=ScannerProfile(noise=(0.02, 0.04), gamma=(0.95, 1.15))),
    DatasetSpec("MSSEG", "ms", "ms", ("T1", "T1ce", "T2", "FLAIR"),
                profile=ScannerProfile(noise=(0.02, 0.045), gamma=(0.88, 1.05))),
    DatasetSpec("OASIS", "wmh", "wmh_small", ("T1", "FLAIR"), atrophy=0.8,
                profile=ScannerProfile(noise=(0.025, 0.05), bias=(0.04, 0.10))),
    DatasetSpec("Tumour1", "tumour", "glioma", ("FLAIR",), seen=False, profile=_UNSEEN),
    DatasetSpec("Tumour2", "tumour", "glioma", ("T2",), seen=False, profile=_UNSEEN),
    DatasetSpec("WMHsMix", "wmh", "wmh_mix", ("FLAIR",), seen=False, atrophy=0.5, profile=_UNSEEN),
)


@dataclass(frozen=True)
class SynthPreset:
    """Geometry and size of a generated benchmark.

    Attributes:
        name: preset name.
        spacing_mm: isotropic voxel size of the MNI box (160 x 196 x 160 mm).
        train_subjects / test_subjects: subjects per dataset (each gives one case per modality).
    """

    name: str
    spacing_mm: float
    train_subjects: dict[str, int]
    test_subjects: dict[str, int]


def _counts(seen: int, brats: int, unseen: int) -> dict[str, int]:
    return {d.name: (brats if d.name == "BraTS" else seen) if d.seen else unseen for d in DATASETS}


SYNTH_PRESETS: dict[str, SynthPreset] = {
    "tiny": SynthPreset("tiny", 8.0, _counts(1, 1, 1), _counts(1, 1, 1)),
    "quick": SynthPreset("quick", 4.0, _counts(3, 4, 1), _counts(2, 2, 2)),
    "cpu": SynthPreset("cpu", 2.0, {**_counts(10, 16, 3), "ATLAS": 12, "ISLES": 12, "MSSEG": 8},
                       _counts(8, 8, 8)),
    "paper": SynthPreset("paper", 1.0, {**_counts(20, 40, 5), "ATLAS": 30, "ISLES": 20, "MSSEG": 12},
                         _counts(10, 20, 10)),
}


def get_synth_preset(name: str) -> SynthPreset:
    if name not in SYNTH_PRESETS:
        raise ConfigError(f"unknown synth preset {name!r}; choose one of {', '.join(SYNTH_PRESETS)}")
    return SYNTH_PRESETS[name]
