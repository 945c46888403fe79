"""Collections: JSON manifests of single-channel lesion cases.

Manifest format (``collection.json``; paths relative to the manifest's folder unless absolute)::

    {"name": "...", "cases": [{"id": "brats_0001_T1", "image": "images/x.nii.gz",
      "label": "labels/x.nii.gz", "modality": "T1", "dataset": "BraTS", "lesion_type": "tumour",
      "split": "train", "seen": true}, ...], "provenance": {...}}

Every case is one image of one modality; the same subject imaged in several modalities gives several
cases that may share a label file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mome.data.constants import LESION_TYPES, canonical_modality
from mome.errors import DataError
from mome.utils.atomic import write_text_atomic

SPLITS = ("train", "test")


@dataclass
class Case:
    """One single-channel image with its binary lesion label.

    Attributes:
        id: unique case identifier.
        image, label: absolute paths (the manifest stores them relative to its folder).
        modality: one of T1, T2, T1ce, FLAIR, DWI.
        dataset: the source dataset name (a task is dataset x modality).
        lesion_type: one of :data:`mome.data.constants.LESION_TYPES`.
        split: ``train`` or ``test``.
        seen: False for datasets held out from foundation-model training (generalisation tests).
        subject: subject id shared by the modalities of one subject (defaults to ``id``).
    """

    id: str
    image: Path
    label: Path | None
    modality: str
    dataset: str
    lesion_type: str
    split: str = "train"
    seen: bool = True
    subject: str = ""

    @property
    def task(self) -> str:
        """The paper's task: dataset x modality."""
        return f"{self.dataset}/{self.modality}"


@dataclass
class Collection:
    """An ordered set of :class:`Case` with a name and provenance."""

    name: str
    cases: list[Case] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self):
        return iter(self.cases)

    def filter(self, *, split: str | None = None, seen: bool | None = None, modality: str | None = None,
               dataset: str | None = None) -> "Collection":
        """A new collection with the cases matching every given criterion."""
        out = [c for c in self.cases
               if (split is None or c.split == split) and (seen is None or c.seen == seen)
               and (modality is None or c.modality == modality) and (dataset is None or c.dataset == dataset)]
        return Collection(self.name, out, self.provenance)

    def modalities(self) -> list[str]:
        return sorted({c.modality for c in self.cases})

    def tasks(self) -> list[str]:
        return sorted({c.task for c in self.cases})

    def counts(self) -> Counter:
        """Number of cases per (dataset, modality, split)."""
        return Counter((c.dataset, c.modality, c.split) for c in self.cases)

    def to_dict(self, root: Path) -> dict:
        cases = []
        for c in self.cases:
            d = dataclasses.asdict(c)
            d["image"] = _rel(c.image, root)
            d["label"] = None if c.label is None else _rel(c.label, root)
            cases.append(d)
        return {"name": self.name, "cases": cases, "provenance": self.provenance}

    def save(self, path: str | os.PathLike, overwrite: bool = True) -> Path:
        """Write the manifest atomically; paths are stored relative to its folder when possible."""
        path = Path(path)
        return write_text_atomic(path, json.dumps(self.to_dict(path.parent.resolve()), indent=2), overwrite)


#: the manifest schema of one case: key -> (JSON types accepted, required); anything else is refused
CASE_SCHEMA: dict[str, tuple[tuple[type, ...], bool]] = {
    "id": ((str,), True), "image": ((str,), True), "label": ((str, type(None)), False),
    "modality": ((str,), True), "dataset": ((str,), True), "lesion_type": ((str,), True),
    "split": ((str,), False), "seen": ((bool,), False), "subject": ((str,), False),
}
_JSON_NAMES = {str: "a string", bool: "true or false", type(None): "null"}


def parse_case(d: dict, root: Path, where: str) -> Case:
    """One manifest entry -> :class:`Case`, typed against :data:`CASE_SCHEMA` (no file access).

    Strict on purpose: ``"seen": "false"`` is refused (Python would read the string as True and an unseen
    dataset would silently become training data), as are numbers for ids or paths and unknown keys.
    """
    if not isinstance(d, dict):
        raise DataError(f"{where}: each case must be a JSON object, got {type(d).__name__}")
    cid = d.get("id")
    name = f"case {cid!r}" if isinstance(cid, str) and cid else "a case"
    for key, value in d.items():
        if key not in CASE_SCHEMA:
            raise DataError(f"{where}: {name} has an unknown key {key!r}; expected {', '.join(CASE_SCHEMA)}")
        types, _ = CASE_SCHEMA[key]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            expected = " or ".join(_JSON_NAMES[t] for t in types)
            raise DataError(f"{where}: {name} has {key!r} = {json.dumps(value)}; expected {expected}")
    for key, (_, required) in CASE_SCHEMA.items():
        if required and not d.get(key, "").strip():
            raise DataError(f"{where}: {name} has no {key!r}")
    if "\0" in d["image"] or "\0" in (d.get("label") or ""):
        raise DataError(f"{where}: {name} has a path with a NUL character")
    modality = canonical_modality(d["modality"], context=f"case {cid!r}")
    if d["lesion_type"] not in LESION_TYPES:
        raise DataError(f"{where}: case {cid!r} has lesion_type {d['lesion_type']!r}; expected one of "
                        f"{', '.join(LESION_TYPES)}")
    split = d.get("split", "train")
    if split not in SPLITS:
        raise DataError(f"{where}: case {cid!r} has split {split!r}; expected 'train' or 'test'")
    label = d.get("label")
    return Case(id=cid, image=_abs(d["image"], root), label=None if label is None else _abs(label, root),
                modality=modality, dataset=d["dataset"], lesion_type=d["lesion_type"], split=split,
                seen=d.get("seen", True), subject=d.get("subject") or cid)


def load_collection(path: str | os.PathLike, check_files: bool = False) -> Collection:
    """Read a manifest.

    Args:
        path: the manifest, or a folder holding ``collection.json``.
        check_files: also open every image and label (existence, shape and affine agreement, 0/1
            labels) with :func:`mome.data.validate.validate_collection`; off by default because reading
            every label of a large collection takes minutes (``mome collection check`` does it once).

    Raises:
        DataError: naming the case, for a malformed manifest (and, with ``check_files``, bad files).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "collection.json"
    if not path.is_file():
        raise DataError(f"collection manifest {path} does not exist")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DataError(f"collection manifest {path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("cases"), list):
        raise DataError(f"collection manifest {path} must be an object with a 'cases' list")
    root = path.parent.resolve()
    cases = [parse_case(d, root, str(path)) for d in raw["cases"]]
    dup = [k for k, n in Counter(c.id for c in cases).items() if n > 1]
    if dup:
        raise DataError(f"collection manifest {path} has duplicate case ids: {', '.join(sorted(dup)[:5])}")
    if not cases:
        raise DataError(f"collection manifest {path} has no cases")
    name = raw.get("name", path.stem)
    if not isinstance(name, str):
        raise DataError(f"collection manifest {path}: 'name' = {json.dumps(name)}; expected a string")
    provenance = raw.get("provenance", {})
    if not isinstance(provenance, dict):
        raise DataError(f"collection manifest {path}: 'provenance' must be an object")
    coll = Collection(name, cases, provenance)
    if check_files:
        from mome.data.validate import validate_collection

        validate_collection(coll)
    return coll


def _rel(p: Path, root: Path) -> str:
    p = Path(p).resolve()
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)


def _abs(p: str, root: Path) -> Path:
    q = Path(p)
    return q if q.is_absolute() else (root / q)
