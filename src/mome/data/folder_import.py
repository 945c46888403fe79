"""Import plain folders or a CSV table of images as a collection.

Folder layout (``import_folder``)::

    SRC/<subject>/<modality>.nii.gz     e.g. t1.nii.gz, T1ce.nii.gz, flair.nii.gz (aliases understood)
    SRC/<subject>/label.nii.gz          the subject's lesion label (name set by ``label_name``)

A SRC that holds NIfTI files itself (no subject folders) is one subject named after the folder. Every
modality file becomes a case ``<dataset>_<subject>_<modality>`` sharing the subject's label. Files
that are neither a modality nor the label are an error unless listed in ``ignore`` (e.g. ``adc``).

CSV layout (``import_csv``): a header row with columns ``image``, ``label`` and ``modality`` (required)
and optionally ``id``, ``subject``, ``dataset``, ``lesion_type``, ``split``, ``seen``; relative paths
are relative to the CSV's folder; empty optional cells fall back to the command-line defaults.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from mome.data.constants import canonical_modality
from mome.data.importing import (ImportResult, LabelRule, RawCase, check_outputs, parse_int_list,
                                 write_import)
from mome.errors import DataError
from mome.utils.nifti import is_nifti_path, strip_nifti_suffix

_TRUE = {"1", "true", "yes", "y", "seen"}
_FALSE = {"0", "false", "no", "n", "unseen"}


def _subject_cases(folder: Path, subject: str, dataset: str, split: str, label_name: str,
                   ignore: set[str]) -> list[RawCase]:
    files = [f for f in sorted(folder.iterdir()) if f.is_file() and is_nifti_path(f) and not f.name.startswith(".")]
    label = None
    images: dict[str, Path] = {}
    for f in files:
        stem = strip_nifti_suffix(f.name)
        if stem.lower() == label_name.lower():
            label = f
            continue
        if stem.lower() in ignore:
            continue
        try:
            mod = canonical_modality(stem, context=f"file {f}")
        except DataError as exc:
            raise DataError(f"subject {subject!r}: {exc}; rename the file, or pass --ignore {stem}") from None
        if mod in images:
            raise DataError(f"subject {subject!r}: {images[mod].name} and {f.name} are both {mod}")
        images[mod] = f
    if label is None:
        raise DataError(f"subject {subject!r} has no label file {label_name}.nii.gz in {folder} "
                        "(set the name with --label-name)")
    if not images:
        raise DataError(f"subject {subject!r} has a label but no image in {folder}")
    return [RawCase(id=f"{dataset}_{subject}_{m}", subject=f"{dataset}_{subject}", image=p, label=label,
                    modality=m, split=split) for m, p in images.items()]


def import_folder(src: str | os.PathLike, out: str | os.PathLike, *, dataset: str, lesion_type: str,
                  seen: bool = True, split: str = "train", label_name: str = "label",
                  ignore: Sequence[str] = (), lesion_labels: Sequence[int] | str | None = None,
                  overwrite: bool = False) -> ImportResult:
    """Import ``SRC/<subject>/<modality>.nii.gz`` + ``label.nii.gz`` folders.

    Args:
        src: the folder of subject folders (or one subject's folder).
        out: manifest path to write (``.json``).
        dataset, lesion_type, seen, split: the same for every case.
        label_name: file name (without .nii.gz) of each subject's label.
        ignore: file names (without .nii.gz, any case) to skip, e.g. ``adc``.
        lesion_labels: label values that are lesion (default every value > 0).
        overwrite: replace an existing manifest / labels folder.

    Raises:
        DataError: a subject without label or image, an unknown file; nothing is written.
    """
    check_outputs(out, overwrite)  # fail before any reading when the output exists
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"folder {src} does not exist")
    ignore_set = {i.lower() for i in ignore}
    if any(is_nifti_path(f) for f in src.iterdir() if f.is_file()):
        raw = _subject_cases(src, src.name, dataset, split, label_name, ignore_set)
    else:
        raw = []
        for sub in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
            raw += _subject_cases(sub, sub.name, dataset, split, label_name, ignore_set)
    return write_import(raw, out, name=dataset, dataset=dataset, lesion_type=lesion_type, seen=seen,
                        rule=LabelRule(parse_int_list(lesion_labels)), overwrite=overwrite, source=str(src))


def _parse_seen(text: str, where: str) -> bool | None:
    t = text.strip().lower()
    if not t:
        return None
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise DataError(f"{where}: seen value {text!r} is not true/false")


def import_csv(table: str | os.PathLike, out: str | os.PathLike, *, dataset: str | None = None,
               lesion_type: str | None = None, seen: bool = True, split: str = "train",
               lesion_labels: Sequence[int] | str | None = None, overwrite: bool = False) -> ImportResult:
    """Import a CSV listing ``image,label,modality[,id,subject,dataset,lesion_type,split,seen]``.

    Args:
        table: the CSV file.
        out: manifest path to write (``.json``).
        dataset, lesion_type, seen, split: defaults for rows whose cell is empty or absent.
        lesion_labels: label values that are lesion (default every value > 0).
        overwrite: replace an existing manifest / labels folder.

    Raises:
        DataError: missing columns, bad cells (naming the row), or any case problem; nothing is written.
    """
    check_outputs(out, overwrite)  # fail before any reading when the output exists
    table = Path(table)
    if not table.is_file():
        raise DataError(f"CSV {table} does not exist")
    root = table.parent.resolve()
    try:
        with open(table, newline="") as fh:
            rows = list(csv.DictReader(fh, strict=True))  # strict: an unterminated quote is an error
            header = [h.strip() for h in (rows[0].keys() if rows else [])]
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"CSV {table} could not be read: {exc}") from exc
    missing = {"image", "label", "modality"} - set(header)
    if missing:
        raise DataError(f"CSV {table} lacks column(s) {', '.join(sorted(missing))}; "
                        "required: image, label, modality")
    raw = []
    for n, row in enumerate(rows, start=2):
        where = f"{table} line {n}"
        if None in row:
            raise DataError(f"{where}: more cells than the header has columns (an unquoted comma?)")
        row = {k.strip(): (v or "").strip() for k, v in row.items()}
        if not row["image"]:
            raise DataError(f"{where}: empty image cell")
        modality = canonical_modality(row["modality"], context=where)
        ds = row.get("dataset") or dataset
        if not ds:
            raise DataError(f"{where}: no dataset (add a dataset column or pass --dataset)")
        image = Path(row["image"]) if Path(row["image"]).is_absolute() else root / row["image"]
        label = None
        if row["label"]:
            label = Path(row["label"]) if Path(row["label"]).is_absolute() else root / row["label"]
        subject = row.get("subject") or strip_nifti_suffix(image.name)
        cid = row.get("id") or f"{ds}_{subject}_{modality}"
        raw.append(RawCase(id=cid, subject=subject, image=image, label=label, modality=modality,
                           split=row.get("split") or split, dataset=ds,
                           lesion_type=row.get("lesion_type") or lesion_type,
                           seen=_parse_seen(row.get("seen", ""), where)))
    return write_import(raw, out, name=dataset or table.stem, dataset=dataset, lesion_type=lesion_type, seen=seen,
                        rule=LabelRule(parse_int_list(lesion_labels)), overwrite=overwrite, source=str(table))
