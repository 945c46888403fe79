"""``generate_benchmark``: write a synthetic multi-modality brain-lesion benchmark (NIfTI + manifest).

Output folder layout::

    collection.json          mome collection manifest (one case per subject x modality) + provenance
    images/<case>.nii.gz     float32 images, MNI box at the preset spacing (RAS, mm)
    labels/<subject>.nii.gz  uint8 0/1 lesion labels (``<subject>_core.nii.gz``: BraTS T1ce tumour core)
    cases_contrast.csv       lesion CNR and volume per case
    contrast.csv, .md        the same per task (dataset x modality) with train/test image counts
    montage.png              mid-lesion axial slice of one test subject per task, label contour in red
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mome.data.collection import Case, Collection
from mome.data.mni import mni_grid
from mome.data.synth.datasets import DATASETS, SynthConfig, make_synth_config
from mome.data.synth.report import case_row, montage, write_tables
from mome.data.synth.shapes import LesionShapes, parse_lesion_mask_args
from mome.data.synth.subject import synth_subject
from mome.utils.atomic import atomic_path, check_writable
from mome.utils.provenance import provenance

Progress = Callable[[int, int, str], None]


def generate_benchmark(preset: str, out_dir: str | os.PathLike, seed: int = 0,
                       lesion_masks: list[str | os.PathLike] | None = None, overwrite: bool = False,
                       subjects_override: dict | None = None, progress: Progress | None = None) -> Collection:
    """Generate the benchmark into ``out_dir`` (built in a temporary sibling, renamed at the end).

    Args:
        preset: ``tiny``, ``quick``, ``cpu`` or ``paper`` (:data:`~mome.data.synth.datasets.SYNTH_PRESETS`).
        out_dir: output folder; refused if it exists unless ``overwrite``.
        seed: master seed; the same seed, preset and options give byte-identical NIfTI files.
        lesion_masks: folders of real binary lesion masks in MNI space, as ``KIND=DIR`` (KIND ``stroke``
            or ``ms``) or a bare folder whose name tells the kind (e.g. ``.../stroke_mni``).
        overwrite: replace an existing ``out_dir``.
        subjects_override: per-dataset subject counts replacing the preset's, see
            :func:`~mome.data.synth.datasets.make_synth_config`.
        progress: optional ``callable(done, total, subject_id)`` called after each subject.

    Returns:
        The written collection (absolute paths inside ``out_dir``).

    Raises:
        OutputExistsError: ``out_dir`` exists and not ``overwrite``.
        ConfigError: unknown preset or bad ``subjects_override``.
        DataError: bad ``lesion_masks``. Nothing is written on any error.
    """
    check_writable(out_dir, overwrite)
    cfg = make_synth_config(preset, subjects_override)
    mask_folders = parse_lesion_mask_args(lesion_masks)
    shapes = {kind: LesionShapes(folders) for kind, folders in mask_folders.items()}
    shape, affine = mni_grid(cfg.spacing_mm)
    jobs = [(di, split, i) for di, ds in enumerate(DATASETS) for split in ("train", "test")
            for i in range(cfg.subjects(ds.name, split))]
    cases: list[Case] = []
    rows: list[dict] = []
    panels: dict[tuple[str, str], list[tuple[str, np.ndarray, np.ndarray]]] = {}
    with atomic_path(out_dir, overwrite=overwrite) as tmp:
        (tmp / "images").mkdir(parents=True)
        (tmp / "labels").mkdir()
        for n, (di, split, i) in enumerate(jobs):
            subject = synth_subject(di, split, i, seed, cfg.spacing_mm, shapes)
            new_cases = _write_subject(tmp, subject, affine)
            cases += new_cases
            for case in new_cases:
                rows.append(case_row(case, subject.images[case.modality], subject.label(case.modality),
                                     subject.anatomy.brain, cfg.spacing_mm))
            if i == 0:  # montage: the first test subject of each dataset (its first train subject if none)
                panels[(subject.dataset.name, split)] = _panels(subject)
            if progress is not None:
                progress(n + 1, len(jobs), subject.id)
        collection = Collection(name=f"mome-synth-{preset}-seed{seed}", cases=cases,
                                provenance=_provenance(cfg, seed, shape, affine, mask_folders))
        collection.save(tmp / "collection.json")
        write_tables(tmp, rows, cfg.spacing_mm)
        chosen = [panels.get((d.name, "test"), panels.get((d.name, "train"))) for d in DATASETS]
        montage(tmp / "montage.png", [p for ps in chosen if ps for p in ps],
                f"mome synth '{preset}' (seed {seed}, {cfg.spacing_mm:g} mm): one subject per task "
                f"(test split), label in red")
    final = Path(out_dir).resolve()
    for case in collection.cases:  # the temporary folder was renamed to out_dir
        case.image = final / case.image.relative_to(tmp)
        case.label = final / case.label.relative_to(tmp)
    return collection


def _write_subject(folder: Path, subject, affine: np.ndarray) -> list[Case]:
    """Save a subject's images and labels under ``folder``; one :class:`Case` per modality."""
    from mome.utils.nifti import save_nifti

    ds = subject.dataset
    label_paths: dict[str, Path] = {}
    cases = []
    for modality in ds.modalities:
        kind = subject.label_kind(modality)
        if kind not in label_paths:
            label_paths[kind] = folder / "labels" / f"{subject.id}{'_core' if kind == 'core' else ''}.nii.gz"
            save_nifti(subject.labels[kind], affine, label_paths[kind], dtype=np.uint8)
        cid = f"{subject.id}_{modality}"
        image_path = folder / "images" / f"{cid}.nii.gz"
        save_nifti(subject.images[modality], affine, image_path, dtype=np.float32)
        cases.append(Case(id=cid, image=image_path, label=label_paths[kind], modality=modality, dataset=ds.name,
                          lesion_type=ds.lesion_type, split=subject.split, seen=ds.seen, subject=subject.id))
    return cases


def _panels(subject) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Montage panels of a subject: the axial slice with the most lesion, every modality."""
    z = int(np.argmax(subject.labels["whole"].sum(axis=(0, 1))))
    return [(f"{subject.dataset.name}/{m}", subject.images[m][:, :, z], subject.label(m)[:, :, z])
            for m in subject.dataset.modalities]


def _provenance(cfg: SynthConfig, seed: int, shape, affine: np.ndarray, mask_folders: dict) -> dict:
    return provenance(
        seed=seed, generator="mome.data.synth.generate_benchmark",
        synth_config={**dataclasses.asdict(cfg), "shape": list(shape), "affine": np.asarray(affine).tolist()},
        datasets=[dataclasses.asdict(d) for d in DATASETS],
        lesion_masks={k: [str(Path(p).resolve()) for p in v] for k, v in mask_folders.items()},
    )
