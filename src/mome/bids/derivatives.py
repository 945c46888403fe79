"""The outputs of ``mome bids``: a BIDS-Derivatives dataset.

Per unit (subject or session), in ``OUT_DIR/sub-<label>[/ses-<label>]/anat/``:

* ``<unit>_space-orig_desc-lesion_mask.nii.gz``: uint8 lesion mask on the grid of the unit's first
  sequence (``space-orig``: that image's own grid; the sidecar's ``SpatialReference`` names it);
* ``<unit>_space-orig_label-lesion_probseg.nii.gz``: the lesion probability (float32);
* ``<unit>_space-orig_label-lesion_probseg.json``: its sidecar (``Sources``, ``SpatialReference``);
* ``<unit>_space-orig_desc-lesion_mask.json``: the sidecar (``Type``, ``Sources``, ``SpatialReference``) with
  mome's lesion statistics, QC warnings and the settings that produced it. It is written last, so a unit
  whose sidecar exists is finished: a rerun with the same settings skips it (resuming), a rerun with other
  settings refuses to replace it without ``--overwrite``.

At the top: ``dataset_description.json`` (``DatasetType: derivative``, ``GeneratedBy``), ``.bidsignore``
and, at the group level, ``lesion_stats.tsv`` (one row per unit) and ``cohort.html``. With ``--report``, each
unit's HTML page is ``OUT_DIR/<unit>.html`` (with ``niivue.umd.js`` beside it).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from mome.errors import InputError, OutputExistsError
from mome.utils.atomic import write_text_atomic

BIDS_VERSION = "1.9.0"
GROUP_TSV = "lesion_stats.tsv"
COHORT_HTML = "cohort.html"
#: files of the derivative dataset that are not BIDS files (the validator is told to skip them)
BIDSIGNORE = f"{GROUP_TSV}\n*.html\n*.js\n.mome-output\n"
README = ("Lesion masks and probabilities segmented by mome (MoME, a Mixture of Modality Experts) from the raw "
          "dataset named in dataset_description.json; each mask's JSON sidecar holds its lesion statistics, QC "
          "warnings and the settings that produced it; lesion_stats.tsv gathers them (group level).\n")
GROUP_COLUMNS = ("participant_id", "session_id", "status", "sequences", "lesion_volume_ml", "lesion_count",
                 "largest_lesion_ml", "qc_warnings", "model", "fusion", "preprocessed")


def unit_paths(out_dir: Path, unit) -> dict[str, Path]:
    folder = out_dir / f"sub-{unit.subject}"
    if unit.session:
        folder = folder / f"ses-{unit.session}"
    stem = folder / "anat" / f"{unit.name}_space-orig"
    return {"mask": Path(f"{stem}_desc-lesion_mask.nii.gz"), "probseg": Path(f"{stem}_label-lesion_probseg.nii.gz"),
            "probseg_sidecar": Path(f"{stem}_label-lesion_probseg.json"),
            "sidecar": Path(f"{stem}_desc-lesion_mask.json")}


def unit_state(paths: dict[str, Path], settings: dict) -> str:
    """``new`` (nothing there), ``done`` (finished with these settings) or ``other`` (anything else there)."""
    present = [p for p in paths.values() if p.exists() or p.is_symlink()]
    if not present:
        return "new"
    sidecar = paths["sidecar"]
    if len(present) == len(paths):
        try:
            if json.loads(sidecar.read_text()).get("MomeSettings") == settings:
                return "done"
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            pass
    return "other"


def check_out_dir(out_dir: Path, bids_root: Path) -> None:
    """Refuse an output folder that is the raw dataset, or a folder that holds another dataset."""
    if out_dir.resolve() == bids_root.resolve():
        raise InputError("OUT_DIR is the BIDS root itself; derivatives go to their own folder (e.g. "
                         "BIDS_ROOT/derivatives/mome)")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"OUT_DIR {out_dir} is a file, not a folder")
    desc = out_dir / "dataset_description.json"
    if desc.is_file():
        try:
            generated = json.loads(desc.read_text()).get("GeneratedBy") or []
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
            raise InputError(f"{desc} is not valid JSON; OUT_DIR holds something else than mome's "
                             "derivatives") from exc
        if not any(isinstance(g, dict) and g.get("Name") == "mome" for g in generated):
            raise OutputExistsError(f"OUT_DIR {out_dir} holds another dataset (its dataset_description.json is "
                                    "not mome's); choose another folder")


def dataset_description(bids_root: Path) -> dict:
    import mome

    return {"Name": "mome lesion segmentation", "BIDSVersion": BIDS_VERSION, "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "mome", "Version": mome.__version__,
                             "Description": "MoME brain-lesion segmentation (Mixture of Modality Experts)"}],
            "SourceDatasets": [{"URL": bids_root.resolve().as_uri()}]}


def write_dataset_files(out_dir: Path, bids_root: Path) -> None:
    """dataset_description.json and .bidsignore (left alone when already there with the same content)."""
    for name, text in (("dataset_description.json", json.dumps(dataset_description(bids_root), indent=2) + "\n"),
                       (".bidsignore", BIDSIGNORE), ("README", README)):
        path = out_dir / name
        if not path.is_file() or path.read_text() != text:
            write_text_atomic(path, text, overwrite=True)


def sidecar(unit, sources: list[Path], bids_root: Path, stats: dict, settings: dict) -> dict:
    rel = [f"bids:raw:{p.resolve().relative_to(bids_root.resolve()).as_posix()}" for p in sources]
    return {"Type": "Lesion", "Sources": rel, "SpatialReference": rel[0],
            "Description": "lesion mask of mome (1 = lesion) on the grid of the first source",
            "UnusedSources": [f"bids:raw:{p.resolve().relative_to(bids_root.resolve()).as_posix()}"
                              for p in unit.unused],
            "SkippedSources": unit.skipped, "LesionStatistics": stats, "MomeSettings": settings}


def probseg_sidecar(sources: list[Path], bids_root: Path) -> dict:
    rel = [f"bids:raw:{p.resolve().relative_to(bids_root.resolve()).as_posix()}" for p in sources]
    return {"Sources": rel, "SpatialReference": rel[0],
            "Description": "mome's lesion probability (fused over the sources when there are several)"}


def group_rows(out_dir: Path) -> list[dict]:
    """One row per finished unit's sidecar under ``out_dir`` (sorted by participant, then session)."""
    rows = []
    for path in sorted(out_dir.glob("sub-*/**/anat/*_space-orig_desc-lesion_mask.json")):
        try:
            meta = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path} is not valid JSON ({exc}); rerun the participant level for it") from exc
        stats = meta.get("LesionStatistics") or {}
        settings = meta.get("MomeSettings") or {}
        entities = dict(part.split("-", 1) for part in path.name.split("_") if "-" in part)
        rows.append({"participant_id": f"sub-{entities.get('sub')}",
                     "session_id": f"ses-{entities['ses']}" if "ses" in entities else "n/a", "status": "ok",
                     "sequences": ",".join(s["modality"] for s in settings.get("sequences", [])),
                     "lesion_volume_ml": stats.get("lesion_volume_ml"), "lesion_count": stats.get("lesion_count"),
                     "largest_lesion_ml": max(stats.get("lesion_volumes_ml") or [0.0]),
                     "qc_warnings": " | ".join((stats.get("qc") or {}).get("warnings", [])) or "n/a",
                     "model": settings.get("model"), "fusion": settings.get("fusion") or "n/a",
                     "preprocessed": settings.get("preprocess")})
    return rows


def group_table(rows: list[dict]) -> str:
    """The rows as a BIDS TSV (``n/a`` for missing values, floats with 6 significant digits)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=GROUP_COLUMNS, delimiter="\t", lineterminator="\n", restval="n/a",
                            extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("n/a" if v is None else f"{v:.6g}" if isinstance(v, float) else v)
                         for k, v in row.items()})
    return buf.getvalue()
