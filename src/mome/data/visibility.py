"""Training cases whose labelled lesion the image actually shows.

The paper trains every modality on its dataset's shared label, so a T1 of a BraTS subject is labelled with
the whole tumour (oedema included) and a T1 of a WMH subject with lesions T1 barely shows. In mome's
synthetic ``cpu`` benchmark those labels sit on lesions with a contrast-to-noise ratio near 0 (BraTS/T1
-0.37 over 85 ml, WMH/T1 and OASIS/T1 -0.05, MSSEG/T1 -0.48, MSSEG/T1ce -0.19; ``contrast.md``). Such
labels ask a network to mark what it cannot see. (Measured, issue 13: training the embedded model on the
filtered ``cpu`` benchmark did *not* remove its whole-region false positives on a real T1; candidate 6 in
``benchmarks/results/domain_candidates.md``. The filter is a data check, not a fix for those.)

:func:`visible_collection` keeps the test split as it is and drops the training cases whose lesion CNR
(:func:`mome.data.synth.report.lesion_cnr`, lesion against the brain within ~4 mm around it) is smaller in
magnitude than a threshold; lesion-free cases stay (they teach "no lesion").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mome.data.collection import Collection


@dataclass
class VisibilityResult:
    """The filtered collection and what was measured: case id -> CNR (NaN: no lesion or no ring)."""

    collection: Collection
    cnr: dict[str, float] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)


def case_cnr(case) -> float:
    """Lesion CNR of one case, measured on its files (brain = non-zero image voxels)."""
    from mome.data.synth.report import lesion_cnr
    from mome.utils.nifti import load_nifti

    img, image = load_nifti(case.image)
    _, label = load_nifti(case.label, allow_empty=True, what="label")
    if image.shape != label.shape:
        from mome.errors import DataError

        raise DataError(f"case {case.id}: image {image.shape} and label {label.shape} differ in shape")
    spacing = float(np.mean(img.header.get_zooms()[:3]))
    return lesion_cnr(image, label > 0, image != 0, spacing)


def visible_collection(collection: Collection, min_cnr: float, progress=None) -> VisibilityResult:
    """``collection`` without the training cases whose |lesion CNR| < ``min_cnr``.

    Args:
        collection: any collection with labels.
        min_cnr: smallest |CNR| a labelled lesion must have to stay (0 keeps everything).
        progress: optional wrapper of the case iterable (e.g. ``rich.progress.track``).
    """
    if not math.isfinite(min_cnr) or min_cnr < 0:
        from mome.errors import ConfigError

        raise ConfigError(f"--min-cnr must be a number >= 0, got {min_cnr}")
    train = [c for c in collection.cases if c.split == "train" and c.label is not None]
    cnr = {c.id: case_cnr(c) for c in (progress(train) if progress else train)}
    dropped = [cid for cid, v in cnr.items() if math.isfinite(v) and abs(v) < min_cnr]
    gone = set(dropped)
    provenance = {**collection.provenance,
                  "visibility_filter": {"min_cnr": min_cnr, "dropped": dropped,
                                        "cnr": {k: (round(v, 4) if math.isfinite(v) else None)
                                                for k, v in cnr.items()}}}
    kept = Collection(collection.name, [c for c in collection.cases if c.id not in gone], provenance)
    return VisibilityResult(kept, cnr, dropped)
