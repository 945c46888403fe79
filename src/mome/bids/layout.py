"""The inputs of ``mome bids``: which images of a BIDS dataset each subject (and session) is segmented from.

The dataset is indexed by pybids (the maintained BIDS library; its own validation keeps only files with
valid BIDS names). A *unit* is one subject, or one subject's session when the dataset has sessions. Per
unit one image per modality is used: ``T1w`` (T1; with a ``ce-`` entity: T1ce), ``T2w`` (T2), ``FLAIR``
and ``dwi`` (DWI), in the anat and dwi folders; when a modality has several (runs, acquisitions) the first
in sorted order is used and the others are listed as unused. A 4D diffusion series becomes the mean of its
b ~ 1000 s/mm^2 volumes (the trace-like image MoME's DWI expert was trained on), read from its ``.bval``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mome.errors import ConfigError, InputError

#: BIDS suffix (and ce- entity) -> MoME modality; also the order of the sequences (the first one's grid is
#: the mask's ``space-orig``)
SUFFIXES = ("T1w", "FLAIR", "T2w", "dwi")
#: a diffusion shell counts as b ~ 1000 within these bounds (s/mm^2)
DWI_SHELL = (500.0, 1500.0)
_LABEL = re.compile(r"^[a-zA-Z0-9]+$")


@dataclass
class Sequence:
    """One input image of a unit: its path, modality and (4D DWI) the volumes averaged into a 3D image."""

    path: Path
    modality: str
    dwi_volumes: list[int] | None = None


@dataclass
class Unit:
    """One subject (or session): what is segmented together into one mask."""

    subject: str
    session: str | None
    sequences: list[Sequence]
    unused: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")


def check_bids_root(root: str | os.PathLike) -> Path:
    """Refuse a root that is not a BIDS dataset (missing, a file, no valid dataset_description.json)."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"BIDS root {root} does not exist")
    if not root.is_dir():
        raise InputError(f"BIDS root {root} is a file, not a folder")
    desc = root / "dataset_description.json"
    if not desc.is_file():
        raise InputError(f"{root} is not a BIDS dataset: it has no dataset_description.json")
    try:
        meta = json.loads(desc.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{desc} is not valid JSON ({exc}); {root} is not a readable BIDS dataset") from exc
    if not isinstance(meta, dict) or not meta.get("Name") or not meta.get("BIDSVersion"):
        raise InputError(f"{desc} lacks Name or BIDSVersion; {root} is not a valid BIDS dataset")
    if meta.get("DatasetType") == "derivative":
        raise InputError(f"{root} is a derivative dataset; give the raw BIDS dataset as BIDS_ROOT")
    return root


def open_layout(root: Path):
    """pybids' index of the raw dataset (derivatives folders are not indexed)."""
    from bids import BIDSLayout

    try:
        return BIDSLayout(str(root), validate=True, derivatives=False)
    except Exception as exc:  # noqa: BLE001 - pybids raises several unrelated types for one unreadable dataset
        raise InputError(f"{root} is not a readable BIDS dataset: {exc}") from exc


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> (K, N) with 1 <= K <= N; ``None`` -> ``None``."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ConfigError(f"--shard {text!r}: give K/N with 1 <= K <= N (e.g. 2/8 for the second of 8 jobs)")
    return int(m.group(1)), int(m.group(2))


def select_subjects(layout, labels: list[str] | None, shard: tuple[int, int] | None) -> list[str]:
    """The subjects to run: the asked-for labels (``sub-`` prefix optional) or all, then this shard's share.

    Shards split the sorted subject list round-robin (subject i goes to shard i mod N + 1), so N shards are
    disjoint and together cover every subject, whatever the subjects' sizes.
    """
    available = sorted(layout.get_subjects())
    if not available:
        raise InputError(f"{layout.root} has no subjects (no sub-* folders with valid BIDS file names)")
    if labels:
        wanted = []
        for label in labels:
            label = label[4:] if label.startswith("sub-") else label
            if not _LABEL.match(label):
                raise ConfigError(f"participant label {label!r} is not a BIDS label (letters and digits only)")
            if label not in available:
                raise InputError(f"participant sub-{label} is not in {layout.root} (it has "
                                 f"{_listing(['sub-' + s for s in available])})")
            if label not in wanted:
                wanted.append(label)
        subjects = sorted(wanted)
    else:
        subjects = available
    if shard is not None:
        k, n = shard
        subjects = [s for i, s in enumerate(subjects) if i % n == k - 1]
    return subjects


def find_units(layout, subjects: list[str]) -> list[Unit]:
    """Every (subject, session) unit of ``subjects`` with its sequences (units without any are kept, empty)."""
    from bids.layout import Query

    units = []
    for subject in subjects:
        sessions = sorted(layout.get_sessions(subject=subject)) or [None]
        for session in sessions:
            files = layout.get(subject=subject, session=session if session else Query.NONE,
                               suffix=list(SUFFIXES), datatype=["anat", "dwi"], extension=[".nii", ".nii.gz"],
                               return_type="object")
            units.append(_unit(layout, subject, session, files))
    return units


def _unit(layout, subject: str, session: str | None, files) -> Unit:
    by_modality: dict[str, list] = {}
    for f in sorted(files, key=lambda f: f.path):
        ents = f.get_entities()
        suffix = ents["suffix"]
        modality = {"T1w": "T1ce" if ents.get("ceagent") else "T1", "T2w": "T2", "FLAIR": "FLAIR",
                    "dwi": "DWI"}[suffix]
        by_modality.setdefault(modality, []).append(f)
    unit = Unit(subject, session, [])
    for modality in ("T1", "FLAIR", "T2", "T1ce", "DWI"):
        found = by_modality.get(modality, [])
        if not found:
            continue
        first, rest = found[0], found[1:]
        unit.unused += [Path(f.path) for f in rest]
        if modality == "DWI":
            volumes, why = _dwi_volumes(layout, Path(first.path))
            if why:
                unit.skipped.append(f"{Path(first.path).name}: {why}")
                continue
            unit.sequences.append(Sequence(Path(first.path), modality, volumes))
        else:
            unit.sequences.append(Sequence(Path(first.path), modality))
    return unit


def _dwi_volumes(layout, path: Path) -> tuple[list[int] | None, str | None]:
    """A 3D DWI is used as is (None); a 4D series: the indices of its b ~ 1000 volumes, or why it is skipped."""
    import nibabel as nib
    import numpy as np

    try:
        shape = nib.load(str(path)).shape
    except Exception as exc:  # noqa: BLE001 - reported per file; nibabel raises several types
        return None, f"unreadable ({exc})"
    if len(shape) == 3 or (len(shape) == 4 and shape[3] == 1):
        return None, None
    try:
        bval = layout.get_bval(str(path))
    except Exception:  # noqa: BLE001 - pybids raises when no .bval applies
        bval = None
    if not bval:
        return None, "a 4D diffusion series without a .bval: cannot pick its b ~ 1000 volumes"
    try:
        b = np.loadtxt(bval, ndmin=1)
    except (OSError, ValueError) as exc:
        return None, f"its .bval {bval} is unreadable ({exc})"
    if b.size != shape[3]:
        return None, f"its .bval has {b.size} values for {shape[3]} volumes"
    picked = [int(i) for i in np.flatnonzero((b > DWI_SHELL[0]) & (b <= DWI_SHELL[1]))]
    if not picked:
        return None, f"no volume with b in ({DWI_SHELL[0]:g}, {DWI_SHELL[1]:g}] s/mm^2"
    return picked, None


def load_sequence(seq: Sequence, folder: Path) -> Path:
    """The 3D file a sequence is predicted from: the file itself, or (4D DWI) the mean of its b ~ 1000
    volumes written into ``folder`` under the same name (so its name still declares the modality)."""
    if seq.dwi_volumes is None:
        return seq.path
    import nibabel as nib
    import numpy as np

    img = nib.load(str(seq.path))
    data = np.asarray(img.dataobj, dtype=np.float32)[..., seq.dwi_volumes].mean(axis=3)
    header = img.header.copy()
    header.set_data_dtype(np.float32)
    out = folder / seq.path.name
    nib.save(nib.Nifti1Image(data, img.affine, header), str(out))
    return out


def _listing(names: list[str], most: int = 8) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")
