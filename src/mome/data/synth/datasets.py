"""The synthetic benchmark's datasets (paper Supplementary Table II) and its size presets.

Seen datasets (14 tasks): BraTS-like (T1, T1ce, T2, FLAIR; tumour-core label on T1ce, whole tumour
otherwise), ATLAS-like (T1, chronic stroke), ISLES-like (DWI, acute stroke), WMH-like (T1, FLAIR),
MSSEG-like (T1, T1ce, T2, FLAIR), OASIS-like (T1, FLAIR; small WMH, elderly anatomy). Unseen datasets
(3 tasks, scanner profiles outside the seen ranges): Tumour1 (FLAIR), Tumour2 (T2), WMHsMix (FLAIR,
lesions of several disease models). Unseen datasets get a few ``train`` cases too (``seen=False``) for
task-specific upper bounds; foundation models train on ``seen=True`` train cases only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mome.data.mni import mni_grid
from mome.data.synth.scanner import ScannerProfile
from mome.errors import ConfigError


@dataclass(frozen=True)
class DatasetSpec:
    """One synthetic dataset.

    Attributes:
        name: dataset name (a task is dataset x modality).
        lesion_type: one of :data:`mome.data.constants.LESION_TYPES`.
        model: lesion model, a key of :data:`mome.data.synth.lesions.LESION_MODELS`.
        modalities: imaged modalities (one case each per subject).
        seen: False for the held-out generalisation datasets.
        profile: scanner effects.
        atrophy: 0..1 ventricle and sulcal enlargement (older cohorts).
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


# outside every seen range: more noise, stronger bias, more blur, a different contrast curve (gamma)
_UNSEEN = ScannerProfile(noise=(0.065, 0.085), bias=(0.11, 0.16), blur_mm=(1.3, 1.8), gamma=(0.72, 0.82),
                         tissue_jitter=0.06)

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
DATASET_NAMES = tuple(d.name for d in DATASETS)


@dataclass(frozen=True)
class SynthConfig:
    """Geometry and size of a generated benchmark (saved in the manifest's provenance).

    Attributes:
        preset: preset name the config came from.
        spacing_mm: isotropic voxel size (mm) of the 160 x 196 x 160 mm MNI box (:mod:`mome.data.mni`).
        train_subjects, test_subjects: subjects per dataset; each subject gives one case per modality.
    """

    preset: str
    spacing_mm: float
    train_subjects: dict[str, int]
    test_subjects: dict[str, int]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape (voxels, RAS axes)."""
        return mni_grid(self.spacing_mm)[0]

    def subjects(self, dataset: str, split: str) -> int:
        """Number of subjects of ``dataset`` in ``split`` (``train`` or ``test``)."""
        return (self.train_subjects if split == "train" else self.test_subjects).get(dataset, 0)

    def n_images(self) -> int:
        """Number of images (cases) the config generates."""
        return sum((self.train_subjects.get(d.name, 0) + self.test_subjects.get(d.name, 0)) * len(d.modalities)
                   for d in DATASETS)


def _counts(brats: int, seen: int, unseen: int, **named: int) -> dict[str, int]:
    out = {d.name: (brats if d.name == "BraTS" else seen) if d.seen else unseen for d in DATASETS}
    out.update(named)
    return out


# training subjects mirror the paper's imbalance (BraTS by far the largest) in compressed form
SYNTH_PRESETS: dict[str, SynthConfig] = {
    "tiny": SynthConfig("tiny", 6.0, _counts(1, 1, 1), _counts(1, 1, 1)),
    "quick": SynthConfig("quick", 4.0, _counts(4, 3, 2), _counts(2, 2, 2)),
    "cpu": SynthConfig("cpu", 2.0, _counts(20, 12, 3, ATLAS=16, ISLES=14), _counts(8, 8, 8)),
    "paper": SynthConfig("paper", 1.0, _counts(60, 20, 5, ATLAS=40, ISLES=30), _counts(20, 20, 20)),
}


def make_synth_config(preset: str, subjects_override: dict | None = None) -> SynthConfig:
    """A preset's config, with some datasets' subject counts replaced.

    Args:
        preset: one of :data:`SYNTH_PRESETS` (``tiny``, ``quick``, ``cpu``, ``paper``).
        subjects_override: ``{dataset: {"train": n, "test": m}}`` (either key may be left out) or
            ``{dataset: (n, m)}``; counts are subjects (>= 0).

    Raises:
        ConfigError: unknown preset or dataset, or counts that are not non-negative integers.
    """
    if preset not in SYNTH_PRESETS:
        raise ConfigError(f"unknown synth preset {preset!r}; choose one of {', '.join(SYNTH_PRESETS)}")
    base = SYNTH_PRESETS[preset]
    train, test = dict(base.train_subjects), dict(base.test_subjects)
    for name, value in (subjects_override or {}).items():
        if name not in DATASET_NAMES:
            raise ConfigError(f"subjects_override: unknown dataset {name!r}; expected one of "
                              f"{', '.join(DATASET_NAMES)}")
        if isinstance(value, dict):
            bad = set(value) - {"train", "test"}
            if bad:
                raise ConfigError(f"subjects_override[{name!r}]: unknown keys {sorted(bad)}; use 'train', 'test'")
            pairs = value.items()
        elif isinstance(value, (tuple, list)) and len(value) == 2:
            pairs = zip(("train", "test"), value)
        else:
            raise ConfigError(f"subjects_override[{name!r}] must be {{'train': n, 'test': m}} or (n, m)")
        for split, n in pairs:
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ConfigError(f"subjects_override[{name!r}][{split!r}] = {n!r}; expected an integer >= 0")
            (train if split == "train" else test)[name] = n
    cfg = SynthConfig(base.preset, base.spacing_mm, train, test)
    if cfg.n_images() == 0:
        raise ConfigError("subjects_override leaves no subject to generate")
    return cfg
