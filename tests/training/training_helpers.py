"""Tiny synthetic collections for the training tests: ellipsoid brains with one spherical lesion."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mome.data.collection import Case, Collection
from mome.utils.nifti import save_nifti

# lesion contrast per modality: positive = brighter than tissue (as the paper's modality-dependence)
CONTRAST = {"T1": -0.8, "T2": 1.0, "T1ce": 1.2, "FLAIR": 1.5, "DWI": 2.0}


def make_collection(root: Path, modalities=("T1", "T2", "T1ce", "FLAIR", "DWI"), datasets=("DS1",),
                    n_train: int = 2, n_test: int = 1, shape=(24, 24, 24), spacing: float = 2.0,
                    unseen: tuple[str, ...] = (), seed: int = 0) -> Path:
    """Write NIfTI images + labels and ``collection.json`` under ``root``; return the manifest path.

    Every dataset images every modality of ``modalities``; datasets named in ``unseen`` are unseen.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).astype(np.float32)
    centre = (np.array(shape) - 1) / 2
    brain = (((grid - centre) / (np.array(shape) * 0.45)) ** 2).sum(-1) < 1
    cases = []
    for dataset in datasets:
        for split, n in (("train", n_train), ("test", n_test)):
            for i in range(n):
                subject = f"{dataset}_{split}{i}"
                c = centre + rng.uniform(-3, 3, size=3)
                radius = rng.uniform(2.5, 4.0)
                lesion = brain & (np.linalg.norm(grid - c, axis=-1) < radius)
                label_path = root / "labels" / f"{subject}.nii.gz"
                save_nifti(lesion.astype(np.uint8), affine, label_path, overwrite=True)
                for m in modalities:
                    img = np.where(brain, 1.0 + 0.1 * rng.standard_normal(shape), 0.0)
                    img = np.where(lesion, img + CONTRAST[m], img).astype(np.float32)
                    img[brain & (img == 0)] = 1e-3
                    path = root / "images" / f"{subject}_{m}.nii.gz"
                    save_nifti(img, affine, path, overwrite=True)
                    cases.append(Case(id=f"{subject}_{m}", image=path, label=label_path, modality=m,
                                      dataset=dataset, lesion_type="tumour", split=split,
                                      seen=dataset not in unseen, subject=subject))
    manifest = root / "collection.json"
    Collection("fixture", cases).save(manifest)
    return manifest
