"""Evaluate a folder of predicted masks against a collection's labels: ``evaluation.json`` + ``.md``.

Predictions are matched to cases by file name: ``<case id>.nii.gz`` (or ``.nii``) first, then the case
image's file name (what ``mome predict`` on a folder writes). Each prediction must lie on its label's
voxel grid (same shape and affine); voxels > 0 are lesion.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from mome.data.collection import Case, Collection, load_collection
from mome.errors import DataError, InputError, ShapeError
from mome.evaluation.metrics import EMPTY_MASK_CONVENTION, compute_metrics
from mome.evaluation.result import CaseRow, EvalResult
from mome.utils.atomic import check_writable, write_text_atomic
from mome.utils.nifti import load_nifti, strip_nifti_suffix
from mome.utils.provenance import provenance

EVAL_JSON = "evaluation.json"
EVAL_MD = "evaluation.md"
SPLIT_CHOICES = ("test", "train", "all")
AFFINE_TOL_MM = 1e-3  # prediction and label affines may differ by float noise from resaving


def match_predictions(pred_dir: str | os.PathLike, cases: list[Case]) -> tuple[dict[str, Path], list[str]]:
    """Find each case's prediction file in ``pred_dir``.

    Args:
        pred_dir: folder of ``.nii``/``.nii.gz`` masks.
        cases: the cases to evaluate.

    Returns:
        ``({case id: prediction path}, [ids of cases without a prediction])``. A file named after the
        case's image is used only when no other selected case has an image of the same name.

    Raises:
        InputError: ``pred_dir`` is not a folder.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise InputError(f"prediction folder {pred_dir} does not exist or is not a folder")
    files: dict[str, Path] = {}
    for p in sorted(pred_dir.iterdir()):
        if p.is_file() and p.name.lower().endswith((".nii.gz", ".nii")):
            files.setdefault(strip_nifti_suffix(p.name), p)  # .nii.gz sorts before .nii: preferred
    image_names = Counter(strip_nifti_suffix(c.image.name) for c in cases)
    found, missing = {}, []
    for c in cases:
        stem = strip_nifti_suffix(c.image.name)
        if c.id in files:
            found[c.id] = files[c.id]
        elif image_names[stem] == 1 and stem in files:
            found[c.id] = files[stem]
        else:
            missing.append(c.id)
    return found, missing


def _load_pair(case: Case, pred_path: Path):
    """Label and prediction arrays (bool) and the voxel spacing (mm), with geometry checks."""
    lab_img, lab = load_nifti(case.label, allow_empty=True, what=f"label of case {case.id!r}")
    pred_img, pred = load_nifti(pred_path, allow_empty=True, what=f"prediction of case {case.id!r}")
    if pred.shape != lab.shape:
        raise ShapeError(f"prediction {pred_path} has shape {pred.shape} but the label of case {case.id!r} "
                         f"has {lab.shape}; predictions must be on the label's voxel grid")
    if not np.allclose(pred_img.affine, lab_img.affine, atol=AFFINE_TOL_MM):
        raise InputError(f"prediction {pred_path} has a different affine from the label of case {case.id!r} "
                         f"(max difference {np.abs(pred_img.affine - lab_img.affine).max():.4g} mm); "
                         "predictions must be in the label's geometry (mome predict keeps the input's)")
    bad = np.unique(lab[(lab != 0) & (lab != 1)])
    if bad.size:
        from mome.data.validate import format_values

        raise InputError(f"label of case {case.id!r} ({case.label}) is not binary: it has values "
                         f"{format_values(np.unique(lab))}; a label must hold only 0 and 1 (`mome collection check` "
                         "refuses it too; re-import with --lesion-labels to choose which values are lesion)")
    if not np.array_equal(pred, np.round(pred)):
        raise InputError(f"prediction {pred_path} has non-integer values (probabilities?); evaluate binary "
                         "masks (voxels > 0 are lesion), e.g. threshold the probabilities at 0.5")
    # physical step of each array axis (mm): column norms of the affine, valid for oblique affines too
    spacing = tuple(float(s) for s in np.linalg.norm(lab_img.affine[:3, :3], axis=0))
    return pred > 0, lab > 0, spacing


def evaluate_predictions(
    pred_dir: str | os.PathLike,
    collection: Collection | str | os.PathLike,
    *,
    split: str = "test",
    out_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    allow_missing: bool = False,
    name: str | None = None,
    progress: bool = False,
) -> EvalResult:
    """Compute every metric for every case of ``split`` and, optionally, write the report files.

    Args:
        pred_dir: folder of predicted masks (``<case id>.nii.gz`` or the image's file name).
        collection: a :class:`Collection` or the path of its manifest (or folder).
        split: ``test`` (default), ``train`` or ``all``.
        out_dir: where to write ``evaluation.json`` and ``evaluation.md``; None writes nothing.
        overwrite: replace existing report files.
        allow_missing: evaluate the cases that have a prediction and list the others in the result
            (default: a missing prediction is an error).
        name: system name stored in the result (default: the prediction folder's name).
        progress: show a progress bar.

    Returns:
        The :class:`EvalResult`.

    Raises:
        DataError: empty selection, cases without labels, or missing predictions.
        InputError / ShapeError: unreadable prediction or one off the label's grid.
        OutputExistsError: a report file exists and ``overwrite`` is False (checked before any work).
    """
    if split not in SPLIT_CHOICES:
        raise DataError(f"split {split!r} is not one of {', '.join(SPLIT_CHOICES)}")
    manifest = None
    if not isinstance(collection, Collection):
        manifest = str(Path(collection).resolve())
        collection = load_collection(collection)
    cases = list(collection if split == "all" else collection.filter(split=split))
    if not cases:
        raise DataError(f"collection {collection.name!r} has no {split!r} cases to evaluate")
    unlabelled = [c.id for c in cases if c.label is None]
    if unlabelled:
        raise DataError(f"{len(unlabelled)} cases have no label and cannot be evaluated: "
                        f"{_ids(unlabelled)}")
    outputs = []
    if out_dir is not None:
        outputs = [check_writable(Path(out_dir) / f, overwrite) for f in (EVAL_JSON, EVAL_MD)]

    found, missing = match_predictions(pred_dir, cases)
    if missing and (not allow_missing or not found):
        hint = "" if found else f" (no prediction in {pred_dir} matches any case)"
        raise DataError(f"{len(missing)} of {len(cases)} cases have no prediction in {pred_dir}{hint}: "
                        f"{_ids(missing)}; expected files named <case id>.nii.gz"
                        + ("" if allow_missing else " (or pass --allow-missing)"))

    rows = []
    todo = [c for c in cases if c.id in found]
    for case in _progress(todo, progress):
        pred, lab, spacing = _load_pair(case, found[case.id])
        m = compute_metrics(pred, lab, spacing).to_dict()
        metrics = {k: m.pop(k) for k in ("dice", "hd95_mm", "avd_ml", "lesion_f1")}
        m.update(prediction=str(found[case.id]), label=str(case.label), spacing_mm=list(spacing))
        rows.append(CaseRow(case.id, case.dataset, case.modality, case.lesion_type, case.seen, metrics, m))

    by_id = {c.id: c for c in cases}
    result = EvalResult(
        rows=rows,
        missing=[{"id": i, "dataset": by_id[i].dataset, "modality": by_id[i].modality,
                  "lesion_type": by_id[i].lesion_type, "seen": by_id[i].seen} for i in missing],
        name=name or Path(pred_dir).resolve().name,
        config={"pred_dir": str(Path(pred_dir).resolve()), "collection": manifest or collection.name,
                "collection_name": collection.name, "split": split, "allow_missing": allow_missing},
        conventions=EMPTY_MASK_CONVENTION,
        provenance=provenance(),
    )
    if outputs:
        from mome.evaluation.report import evaluation_markdown

        texts = (result.to_json(), evaluation_markdown(result))  # render both before writing either
        for path, text in zip(outputs, texts):
            write_text_atomic(path, text, overwrite=overwrite)
    return result


def _ids(ids: list[str], n: int = 20) -> str:
    return ", ".join(ids[:n]) + (f", ... ({len(ids) - n} more)" if len(ids) > n else "")


def _progress(items, show: bool):
    if not show:
        yield from items
        return
    from rich.progress import track

    yield from track(items, description="evaluating", total=len(items))
