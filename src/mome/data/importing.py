"""What every importer shares: binary lesion labels from label maps, checks, and atomic writing.

Label rule (documented for users in ``mome collection import --help``): a voxel is lesion when its label
value is in the chosen set of lesion values; by default every value > 0 (minus an nnU-Net ``ignore``
label, whose voxels are unannotated and become background). Labels must hold integer values.
A label file that is already 0/1 and whose 1 stays lesion is referenced in place; any other label is
reduced to a new uint8 0/1 file in ``<manifest stem>_labels/`` next to the manifest. Images are always
referenced in place, never copied.

Nothing is written unless every case passes: geometry (headers) is checked before any file is written,
reduced labels go to a temporary folder renamed into place only when all labels are valid, and the
manifest is written last.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mome.data.collection import Case, Collection
from mome.data.constants import LESION_TYPES
from mome.data.validate import Problem, format_values, geometry_mismatch, problems_error, read_geometry
from mome.errors import DataError
from mome.utils.atomic import check_writable, mark_output_folder
from mome.utils.nifti import save_nifti
from mome.utils.provenance import provenance


@dataclass(frozen=True)
class LabelRule:
    """Which label values count as lesion.

    Attributes:
        lesion_values: the lesion values; None means every value > 0.
        exclude: values never counted as lesion (e.g. nnU-Net's ignore label).
    """

    lesion_values: tuple[int, ...] | None = None
    exclude: tuple[int, ...] = ()

    @property
    def tag(self) -> str:
        """Short name used in reduced label file names (``gt0`` or ``1-2-4``)."""
        base = "gt0" if self.lesion_values is None else "-".join(str(v) for v in self.lesion_values)
        return base + ("".join(f"-not{v}" for v in self.exclude) if self.exclude else "")

    def describe(self) -> str:
        what = "label > 0" if self.lesion_values is None else f"label in {{{', '.join(map(str, self.lesion_values))}}}"
        return what + (f", except {', '.join(map(str, self.exclude))}" if self.exclude else "")

    def apply(self, data: np.ndarray) -> np.ndarray:
        """0/1 uint8 lesion mask from an integer label map."""
        mask = data > 0 if self.lesion_values is None else np.isin(data, self.lesion_values)
        if self.exclude:
            mask &= ~np.isin(data, self.exclude)
        return mask.astype(np.uint8)

    def keeps_binary(self) -> bool:
        """True when a 0/1 label is unchanged by this rule (so it can be referenced in place)."""
        return (self.lesion_values is None or 1 in self.lesion_values) and 1 not in self.exclude


@dataclass
class RawCase:
    """A case found by an importer, before its label is checked and reduced."""

    id: str
    subject: str
    image: Path
    label: Path | None
    modality: str
    split: str
    dataset: str | None = None
    lesion_type: str | None = None
    seen: bool | None = None


@dataclass
class ImportResult:
    """What an import wrote.

    Attributes:
        collection: the imported cases (absolute paths).
        manifest: path of the written ``collection.json``.
        labels_dir: folder of reduced labels, or None when every label was referenced in place.
        labels_written: number of reduced label files written.
        warnings: non-fatal findings (empty lesion masks, lesion values never seen...).
    """

    collection: Collection
    manifest: Path
    labels_dir: Path | None
    labels_written: int
    warnings: list[str] = field(default_factory=list)


def parse_int_list(text: str | Sequence[int] | None, what: str = "--lesion-labels") -> tuple[int, ...] | None:
    """``"1,2,4"`` -> ``(1, 2, 4)``; None stays None."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    try:
        vals = tuple(sorted({int(t) for t in items if str(t) != ""}))
    except ValueError:
        raise DataError(f"{what} {text!r} must be integers separated by commas, e.g. 1,2,4") from None
    if not vals:
        raise DataError(f"{what} is empty; give label values such as 1,2,4")
    return vals


def labels_dir_for(manifest: Path) -> Path:
    """Folder where reduced labels of ``manifest`` go: ``<folder>/<stem>_labels``."""
    return manifest.parent / f"{manifest.stem}_labels"


def check_outputs(out: str | os.PathLike, overwrite: bool) -> None:
    """Refuse an existing manifest or labels folder unless ``overwrite``."""
    check_writable(out, overwrite)
    check_writable(labels_dir_for(Path(out)), overwrite)


def _raise(problems: list[Problem], what: str) -> None:
    if problems:
        raise problems_error(what, problems, "; nothing was written")


def _check_fields(raw: Sequence[RawCase], dataset: str | None, lesion_type: str | None) -> list[Problem]:
    problems = [Problem(cid, "duplicate case id (two files give the same id; check modality names and "
                             "skipped channels)") for cid, n in Counter(r.id for r in raw).items() if n > 1]
    for r in raw:
        if not (r.dataset or dataset):
            problems.append(Problem(r.id, "no dataset name; pass --dataset"))
        lt = r.lesion_type or lesion_type
        if lt not in LESION_TYPES:
            problems.append(Problem(r.id, f"lesion type {lt!r} is not one of {', '.join(LESION_TYPES)}"))
        if r.split not in ("train", "test"):
            problems.append(Problem(r.id, f"split {r.split!r}; expected train or test"))
    return problems


def _check_geometry(raw: Sequence[RawCase]) -> list[Problem]:
    problems, geo = [], {}

    def get(p: Path):
        key = p.resolve()
        if key not in geo:
            try:
                geo[key] = read_geometry(key)
            except DataError as exc:
                geo[key] = exc
        return geo[key]

    for r in raw:
        gi = get(r.image)
        if isinstance(gi, DataError):
            problems.append(Problem(r.id, f"image {gi}"))
        if r.label is None:
            continue
        gl = get(r.label)
        if isinstance(gl, DataError):
            problems.append(Problem(r.id, f"label {gl}"))
        elif not isinstance(gi, DataError):
            why = geometry_mismatch(gi, gl)
            if why:
                problems.append(Problem(r.id, f"{why} (image {r.image}, label {r.label})"))
    return problems


def _reduce_label(path: Path, rule: LabelRule, dest: Path) -> tuple[bool, np.ndarray, bool]:
    """Check and reduce one label. Returns (written, distinct values, lesion present)."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:
        raise DataError(f"label {path} could not be read: {exc}") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    vals = np.unique(data)
    if not np.all(np.isfinite(vals)) or not np.all(np.equal(np.mod(vals, 1), 0)):
        raise DataError(f"label {path} has non-integer values ({format_values(vals)}); a label map must hold "
                        "integer class values (is this an image or a probability map?)")
    mask = rule.apply(data)
    if np.all(np.isin(vals, (0, 1))) and rule.keeps_binary():
        return False, vals, bool(mask.any())
    save_nifti(mask, img.affine, dest, dtype=np.uint8)
    return True, vals, bool(mask.any())


def write_import(raw: Sequence[RawCase], out: str | os.PathLike, *, name: str, dataset: str | None,
                 lesion_type: str | None, seen: bool = True, rule: LabelRule = LabelRule(),
                 rules_by_modality: dict[str, LabelRule] | None = None, overwrite: bool = False,
                 source: str = "", warnings: Iterable[str] = ()) -> ImportResult:
    """Check ``raw`` cases, write reduced labels and the manifest ``out``; all or nothing.

    Args:
        raw: the cases an importer found.
        out: manifest path (``.json``); reduced labels go to ``<out folder>/<out stem>_labels/``.
        name: collection name stored in the manifest.
        dataset, lesion_type, seen: defaults for cases that do not carry their own.
        rule: label rule for every case; ``rules_by_modality`` overrides it per modality.
        overwrite: replace an existing manifest and labels folder.
        source: where the cases came from (recorded in the provenance).
        warnings: importer findings to pass on.

    Raises:
        DataError: naming each failing case; nothing is written.
        OutputExistsError: the manifest or labels folder exists and ``overwrite`` is False.
    """
    out = Path(out)
    if out.suffix.lower() != ".json":
        raise DataError(f"--out {out} must be a .json manifest path, e.g. {out / 'collection.json'}")
    if not raw:
        raise DataError(f"no cases found in {source or 'the source'}; nothing was written")
    check_writable(out, overwrite)
    labels_dir = labels_dir_for(out)
    check_writable(labels_dir, overwrite)
    rules_by_modality = rules_by_modality or {}
    warns = list(warnings)

    _raise(_check_fields(raw, dataset, lesion_type) + _check_geometry(raw), f"cannot import {source}")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{labels_dir.name}.", dir=out.parent))
    try:
        problems: list[Problem] = []
        reduced: dict[tuple[Path, LabelRule], Path | Exception] = {}
        seen_values: set[int] = set()
        cases, n_written, empty = [], 0, []
        for r in raw:
            r_rule = rules_by_modality.get(r.modality, rule)
            label_path = None
            if r.label is not None:
                key = (r.label.resolve(), r_rule)
                if key not in reduced:
                    fname = f"{r.subject}_lesion-{r_rule.tag}.nii.gz"
                    try:
                        written, vals, has_lesion = _reduce_label(r.label, r_rule, tmp_dir / fname)
                        seen_values.update(int(v) for v in vals)
                        reduced[key] = (labels_dir / fname) if written else r.label.resolve()
                        n_written += int(written)
                        if not has_lesion:
                            empty.append(r.id)
                    except DataError as exc:
                        reduced[key] = exc
                got = reduced[key]
                if isinstance(got, Exception):
                    problems.append(Problem(r.id, str(got)))
                    continue
                label_path = got
            cases.append(Case(id=r.id, image=r.image.resolve(), label=label_path, modality=r.modality,
                              dataset=r.dataset or dataset or "", lesion_type=r.lesion_type or lesion_type or "",
                              split=r.split, seen=seen if r.seen is None else r.seen, subject=r.subject))
        _raise(problems, f"cannot import {source}")
        for rl in {rule, *rules_by_modality.values()}:
            missing = [v for v in (rl.lesion_values or ()) if v not in seen_values]
            if missing:
                warns.append(f"lesion label value(s) {', '.join(map(str, missing))} occur in no label file")
        kinds = {c.id: c.lesion_type for c in cases}
        lesion_empty = [cid for cid in empty if kinds.get(cid) != "none"]
        if lesion_empty:
            warns.append(f"{len(lesion_empty)} case(s) have an empty lesion mask, e.g. {lesion_empty[0]!r}")

        rules = {"default": rule.describe(), **{m: r.describe() for m, r in rules_by_modality.items()}}
        coll = Collection(name, cases, provenance(source=source, label_rule=rules, labels_written=n_written))
        if n_written:
            mark_output_folder(tmp_dir)
            if labels_dir.exists():
                shutil.rmtree(labels_dir)
            os.replace(tmp_dir, labels_dir)
        try:
            coll.save(out, overwrite=overwrite)
        except BaseException:
            if n_written:
                shutil.rmtree(labels_dir, ignore_errors=True)
            raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return ImportResult(coll, out, labels_dir if n_written else None, n_written, warns)
