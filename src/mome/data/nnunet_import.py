"""Import an nnU-Net raw dataset (v2 layout; v1's ``modality`` key is accepted too) as a collection.

Layout read::

    SRC/dataset.json         {"channel_names": {"0": "FLAIR", "1": "T1w", ...},
                              "labels": {"background": 0, "edema": 1, ...}, "file_ending": ".nii.gz"}
    SRC/imagesTr/<case>_<XXXX><ending>   one file per case and channel XXXX (4 digits)
    SRC/labelsTr/<case><ending>
    SRC/imagesTs/, SRC/labelsTs/          optional; labelled test cases go to the test split

Every channel of a case becomes one single-channel case (id ``<dataset>_<case>_<modality>``, subject
``<dataset>_<case>``) sharing the case's label. Channel names are mapped to mome's five modalities
(aliases such as T1w, t1gd, T2w are understood); ``channels`` overrides a name or skips a channel
(ADC, CT... have no MoME expert). Labels are reduced to binary masks by :mod:`mome.data.importing`'s
rule; lesion values may be given as integers or as names from ``dataset.json`` ``labels`` (a region
name given as a list of values, as in nnU-Net's region-based training, expands to those values).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from mome.data.constants import canonical_modality
from mome.data.importing import ImportResult, LabelRule, RawCase, check_outputs, write_import
from mome.errors import DataError

SKIP = "skip"


def _read_dataset_json(src: Path) -> dict:
    path = src / "dataset.json"
    if not path.is_file():
        raise DataError(f"{src} is not an nnU-Net raw dataset: {path} is missing")
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise DataError(f"{path} must hold a JSON object")
    return meta


def channel_modalities(meta: Mapping, overrides: Mapping[int, str] | None = None,
                       where: str = "dataset.json") -> dict[int, str]:
    """Channel index -> mome modality, without skipped channels.

    Args:
        meta: the parsed dataset.json (``channel_names``, or v1 ``modality``).
        overrides: channel index -> modality name or ``"skip"``; applied before name mapping.

    Raises:
        DataError: no channel names, a non-integer index, or a name that is not a mome modality.
    """
    names = meta.get("channel_names", meta.get("modality"))
    if not isinstance(names, Mapping) or not names:
        raise DataError(f"{where} has no 'channel_names' (nnU-Net v2) or 'modality' (v1) mapping")
    overrides = dict(overrides or {})
    out = {}
    for key, name in names.items():
        try:
            idx = int(key)
        except (TypeError, ValueError):
            raise DataError(f"{where}: channel index {key!r} is not an integer") from None
        name = overrides.pop(idx, name)
        if str(name).lower() == SKIP:
            continue
        try:
            out[idx] = canonical_modality(str(name))
        except DataError as exc:
            raise DataError(f"{where}: channel {idx}: {exc}; map it with --channel {idx}=<modality> or skip "
                            f"it with --channel {idx}=skip") from None
    if overrides:
        raise DataError(f"--channel names channel(s) {sorted(overrides)} that {where} does not have "
                        f"(channels: {', '.join(sorted(names, key=str))})")
    if not out:
        raise DataError(f"{where}: every channel is skipped; nothing to import")
    return out


def resolve_lesion_values(spec: Sequence[int | str] | str | None, meta: Mapping,
                          where: str = "dataset.json") -> tuple[int, ...] | None:
    """Lesion label values from integers and/or label names of ``meta['labels']``.

    ``"1,2,4"``, ``"edema,enhancing tumor"`` and ``[1, "edema"]`` are all accepted; None stays None.
    """
    if spec is None:
        return None
    items = [t.strip() for t in spec.split(",")] if isinstance(spec, str) else list(spec)
    items = [t for t in items if str(t) != ""]
    if not items:
        raise DataError("--lesion-labels is empty; give label values (1,2,4) or label names")
    labels = meta.get("labels") or {}
    values: set[int] = set()
    for item in items:
        try:
            values.add(int(item))
            continue
        except (TypeError, ValueError):
            pass
        if item not in labels:
            raise DataError(f"lesion label {item!r} is neither an integer nor a label name of {where} "
                            f"(names: {', '.join(map(str, labels)) or 'none'})")
        v = labels[item]
        vs = v if isinstance(v, (list, tuple)) else [v]
        try:
            values.update(int(x) for x in vs)
        except (TypeError, ValueError):
            raise DataError(f"{where}: label {item!r} has non-integer value {v!r}") from None
    return tuple(sorted(values))


def _ignore_values(meta: Mapping) -> tuple[int, ...]:
    v = (meta.get("labels") or {}).get("ignore")
    return (int(v),) if isinstance(v, int) else ()


def _scan(images: Path, labels: Path | None, ending: str, channels: dict[int, str], dataset: str,
          split: str, required_label: bool, warnings: list[str]) -> list[RawCase]:
    pattern = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})" + re.escape(ending) + "$")
    found: dict[str, dict[int, Path]] = {}
    for f in sorted(images.iterdir()):
        if f.name.startswith(".") or not f.is_file():
            continue
        m = pattern.match(f.name)
        if not m:
            if f.name.endswith(ending):
                raise DataError(f"{f}: file name does not follow nnU-Net's <case>_<XXXX>{ending} pattern")
            continue
        found.setdefault(m["case"], {})[int(m["ch"])] = f
    raw, unlabelled = [], []
    all_channels = set(channels)
    for case, files in found.items():
        missing = all_channels - set(files)
        if missing:
            raise DataError(f"case {case!r} ({images}) has no file for channel(s) "
                            f"{', '.join(f'{c:04d}' for c in sorted(missing))}")
        label = None if labels is None else labels / f"{case}{ending}"
        if label is None or not label.is_file():
            if required_label:
                raise DataError(f"case {case!r} has no label: {label if label else labels} does not exist")
            unlabelled.append(case)
            continue
        for ch, modality in sorted(channels.items()):
            raw.append(RawCase(id=f"{dataset}_{case}_{modality}", subject=f"{dataset}_{case}",
                               image=files[ch], label=label, modality=modality, split=split))
    if unlabelled:
        warnings.append(f"{len(unlabelled)} case(s) in {images} have no label in {labels} and were not "
                        f"imported, e.g. {unlabelled[0]!r}")
    return raw


def import_nnunet(src: str | os.PathLike, out: str | os.PathLike, *, dataset: str, lesion_type: str,
                  seen: bool = True, split: str | None = None,
                  lesion_labels: Sequence[int | str] | str | None = None,
                  modality_labels: Mapping[str, Sequence[int | str] | str] | None = None,
                  channels: Mapping[int, str] | None = None, overwrite: bool = False) -> ImportResult:
    """Import an nnU-Net raw dataset folder as a collection manifest.

    Args:
        src: the dataset folder (holding dataset.json, imagesTr/, labelsTr/, optionally imagesTs/, labelsTs/).
        out: manifest path to write (``.json``).
        dataset: dataset name of the cases (a task is dataset x modality).
        lesion_type: one of :data:`mome.data.constants.LESION_TYPES`.
        seen: False for a dataset held out from training (generalisation test).
        split: None = imagesTr -> train, imagesTs -> test; ``train`` or ``test`` forces every case.
        lesion_labels: label values or names that are lesion (default: every value > 0 except ``ignore``).
        modality_labels: per-modality lesion labels (e.g. ``{"T1ce": "1,3"}`` for BraTS tumour core).
        channels: channel index -> modality name or ``"skip"``, overriding dataset.json.
        overwrite: replace an existing manifest / labels folder.

    Returns:
        What was written (see :class:`mome.data.importing.ImportResult`).

    Raises:
        DataError: a missing file, a channel or label problem; each names the case. Nothing is written.
    """
    check_outputs(out, overwrite)  # fail before any reading when the output exists
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"nnU-Net dataset folder {src} does not exist")
    meta = _read_dataset_json(src)
    where = str(src / "dataset.json")
    ending = str(meta.get("file_ending", ".nii.gz"))
    if ending not in (".nii.gz", ".nii"):
        raise DataError(f"{where}: file_ending {ending!r} is not supported; mome reads NIfTI (.nii.gz, .nii)")
    chans = channel_modalities(meta, channels, where)
    if split not in (None, "train", "test"):
        raise DataError(f"split {split!r}; expected train or test")
    exclude = _ignore_values(meta)
    rule = LabelRule(resolve_lesion_values(lesion_labels, meta, where), exclude)
    by_mod = {}
    for mod, spec in (modality_labels or {}).items():
        by_mod[canonical_modality(mod, context="--modality-labels")] = LabelRule(
            resolve_lesion_values(spec, meta, where), exclude)
    warnings: list[str] = []
    if not (src / "imagesTr").is_dir() and not (src / "imagesTs").is_dir():
        raise DataError(f"{src} has neither imagesTr/ nor imagesTs/")
    raw: list[RawCase] = []
    if (src / "imagesTr").is_dir():
        if not (src / "labelsTr").is_dir():
            raise DataError(f"{src} has imagesTr/ but no labelsTr/")
        raw += _scan(src / "imagesTr", src / "labelsTr", ending, chans, dataset, split or "train", True, warnings)
    if (src / "imagesTs").is_dir():
        lab = src / "labelsTs" if (src / "labelsTs").is_dir() else None
        raw += _scan(src / "imagesTs", lab, ending, chans, dataset, split or "test", False, warnings)
    return write_import(raw, out, name=dataset, dataset=dataset, lesion_type=lesion_type, seen=seen, rule=rule,
                        rules_by_modality=by_mod, overwrite=overwrite, source=str(src), warnings=warnings)
