"""One synthetic subject: anatomy, lesion compartments, labels and one image per modality (in memory)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mome.data.synth.anatomy import Anatomy, make_anatomy
from mome.data.synth.contrast import render
from mome.data.synth.datasets import DATASETS, DatasetSpec
from mome.data.synth.lesions import LESION_MODELS, SHAPE_KIND
from mome.data.synth.shapes import LesionShapes
from mome.errors import DataError

SPLIT_INDEX = {"train": 0, "test": 1}
_CORE = ("enhancing", "necrosis")


@dataclass
class SynthSubject:
    """A generated subject.

    Attributes:
        id: subject id, ``<dataset>_<split>_<index>`` (e.g. ``brats_train_0003``).
        dataset: its dataset.
        split: ``train`` or ``test``.
        anatomy: tissue maps (for measurements).
        compartments: soft lesion compartment maps (0..1).
        labels: ``whole`` (every compartment) and ``core`` (enhancing + necrosis) binary masks (uint8).
        images: modality -> float32 image.
    """

    id: str
    dataset: DatasetSpec
    split: str
    anatomy: Anatomy
    compartments: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    images: dict[str, np.ndarray]

    def label_kind(self, modality: str) -> str:
        """``core`` for modalities labelled with the tumour core (BraTS T1ce), else ``whole``."""
        return "core" if modality in self.dataset.core_label_on else "whole"

    def label(self, modality: str) -> np.ndarray:
        """The binary label of the image of ``modality``."""
        return self.labels[self.label_kind(modality)]


def subject_rng(seed: int, dataset_index: int, split: str, index: int, *extra: int) -> np.random.Generator:
    """The generator of one subject (or, with ``extra``, of one of its images): independent of the order
    and number of the other subjects, so a subject is the same whatever the preset's counts are."""
    return np.random.default_rng([int(seed), dataset_index, SPLIT_INDEX[split], index, *extra])


def synth_subject(dataset: str | int, split: str, index: int, seed: int, spacing_mm: float,
                  shapes: dict[str, LesionShapes] | None = None, max_tries: int = 6) -> SynthSubject:
    """Generate one subject of a dataset.

    Args:
        dataset: dataset name or index in :data:`DATASETS`.
        split: ``train`` or ``test``.
        index: subject index within the dataset and split.
        seed: master seed.
        spacing_mm: grid spacing (mm) of the MNI box.
        shapes: optional real lesion-shape pools by kind (``stroke``, ``ms``).
        max_tries: lesion draws before giving up when a lesion vanishes on a coarse grid.

    Raises:
        DataError: no visible lesion after ``max_tries`` draws.
    """
    di = dataset if isinstance(dataset, int) else [d.name for d in DATASETS].index(dataset)
    ds = DATASETS[di]
    rng = subject_rng(seed, di, split, index)
    anat = make_anatomy(rng, spacing_mm, atrophy=ds.atrophy * rng.uniform(0.6, 1.0))
    pool = (shapes or {}).get(SHAPE_KIND.get(ds.model, ""))
    for _ in range(max_tries):
        comps = LESION_MODELS[ds.model](anat, rng, pool)
        whole = sum(comps.values()) > 0.5
        core = sum((comps[k] for k in _CORE if k in comps), np.zeros_like(anat.gm)) > 0.5
        if whole.any() and (not ds.core_label_on or core.any()):
            break
    else:
        raise DataError(f"could not place a visible {ds.model} lesion for {ds.name} subject {index} on the "
                        f"{spacing_mm:g} mm grid after {max_tries} draws; use a finer preset")
    labels = {"whole": whole.astype(np.uint8), "core": core.astype(np.uint8)}
    images = {m: render(anat, comps, m, ds.profile, subject_rng(seed, di, split, index, 100 + mi))
              for mi, m in enumerate(ds.modalities)}
    return SynthSubject(f"{ds.name.lower()}_{split}_{index:04d}", ds, split, anat, comps, labels, images)
