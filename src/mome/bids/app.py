"""``mome bids BIDS_ROOT OUT_DIR participant|group``: a BIDS App over a cohort.

The participant level segments every chosen subject (or session) from all its sequences at once
(:func:`mome.inference.subject.predict_subject`; one sequence: :func:`mome.inference.api.predict`) and
writes BIDS-Derivatives (:mod:`mome.bids.derivatives`). Everything a user can get wrong (not a BIDS root,
an unknown participant, a bad shard, an existing derivative of other settings without ``--overwrite``) is
refused before the first prediction. It is resumable (finished units are skipped) and shardable
(``--shard K/N``: job arrays on a cluster). ``--report`` adds an HTML page per unit. The group level gathers
every unit's statistics into one TSV and one HTML page (``cohort.html``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mome.bids.derivatives import (COHORT_HTML, GROUP_TSV, check_out_dir, group_rows, group_table, probseg_sidecar, sidecar,
                                   unit_paths, unit_state, write_dataset_files)
from mome.bids.layout import (check_bids_root, find_units, load_sequence, open_layout, parse_shard,
                              select_subjects)
from mome.errors import MomeError, OutputExistsError


@dataclass
class ParticipantReport:
    """What a participant-level run did, unit by unit (``sub-01`` or ``sub-01_ses-1``)."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def run_participant(bids_root, out_dir, *, participant_labels: list[str] | None = None, shard: str | None = None,
                    model=None, fusion: str | None = None, preprocess: bool = False, registration: str = "auto",
                    overwrite: bool = False, report: bool = False, echo: Callable[[str], None] = print,
                    **options) -> ParticipantReport:
    """Segment the chosen subjects of ``bids_root`` into ``out_dir`` (see the module docstring); with
    ``report`` also write each unit's HTML report (``OUT_DIR/<unit>.html``, also for finished units that
    lack one)."""
    from mome.inference.api import make_predictor
    from mome.utils.atomic import check_location

    root, out_dir = check_bids_root(bids_root), Path(out_dir)
    check_out_dir(out_dir, root)
    shard_kn = parse_shard(shard)
    if fusion is not None:
        from mome.inference.fusion import FUSION_RULES

        if fusion not in FUSION_RULES:
            from mome.errors import ConfigError

            raise ConfigError(f"--fusion {fusion!r}; use one of {', '.join(FUSION_RULES)}")
    layout = open_layout(root)
    subjects = select_subjects(layout, participant_labels, shard_kn)
    units = find_units(layout, subjects)
    check_location(out_dir / "dataset_description.json")
    options.setdefault("patch_size", "whole")
    options.setdefault("precision", "auto")
    predictor, record = make_predictor(model, **options)
    if getattr(predictor, "n_clicks", None):
        from mome.errors import ConfigError

        raise ConfigError("interactive models (SAM-Med3D) need a reference mask per image; mome bids runs "
                          "automatic models only")
    resolved = record.get("resolved") or {}
    model_name = resolved.get("name") or resolved.get("folder") or str(model)
    plans = []
    for unit in units:  # every existing derivative is judged before the first prediction
        settings = _settings(unit, root, model_name, fusion, preprocess, registration, options)
        paths = unit_paths(out_dir, unit)
        state = unit_state(paths, settings)
        if state == "other" and not overwrite:
            raise OutputExistsError(f"{paths['mask'].parent} already holds {unit.name}'s derivatives from other "
                                    "settings or an unfinished run; pass --overwrite to replace them")
        plans.append((unit, settings, paths, state))
    want_report, report = report, ParticipantReport()
    echo(f"model: {model_name}; {len(units)} unit(s) of {len(subjects)} subject(s)"
         + (f" (shard {shard_kn[0]}/{shard_kn[1]})" if shard_kn else ""))
    for unit, settings, paths, state in plans:
        if state == "done":
            report.skipped.append(unit.name)
            if want_report and not unit_report_path(out_dir, unit).is_file():
                write_unit_report(unit, paths, root, out_dir)
                echo(f"{unit.name}: already done; report written")
            else:
                echo(f"{unit.name}: already done, skipped")
            continue
        for why in unit.skipped:
            echo(f"mome: warning: {unit.name}: {why}")
        if not unit.sequences:
            report.empty.append(unit.name)
            echo(f"mome: warning: {unit.name}: no T1w, T2w, FLAIR or dwi image to segment; skipped")
            continue
        t0 = time.perf_counter()
        try:
            stats = _predict_unit(unit, paths, settings, root, predictor, fusion, preprocess, registration,
                                  out_dir)
        except MomeError as exc:
            report.failed[unit.name] = str(exc)
            echo(f"mome: error: {unit.name}: {exc}")
            continue
        report.done.append(unit.name)
        if want_report:
            write_unit_report(unit, paths, root, out_dir)
        echo(f"{unit.name}: {', '.join(s.modality for s in unit.sequences)} -> {stats['lesion_volume_ml']:.2f} ml "
             f"in {stats['lesion_count']} lesion(s) ({time.perf_counter() - t0:.0f} s)")
        for warning in (stats.get("qc") or {}).get("warnings", []):
            echo(f"mome: warning: {unit.name}: {warning}")
    return report


def _settings(unit, root: Path, model_name: str, fusion, preprocess: bool, registration: str,
              options: dict) -> dict:
    """What a unit's derivatives depend on; a finished unit with equal settings is not run again."""
    import mome

    return {"model": model_name, "mome_version": mome.__version__,
            "fusion": (fusion or "weighted") if len(unit.sequences) > 1 else None,
            "preprocess": bool(preprocess), "registration": registration if preprocess else None,
            "tta": bool(options.get("tta", False)), "precision": options.get("precision"),
            "sequences": [{"source": s.path.resolve().relative_to(root.resolve()).as_posix(),
                           "modality": s.modality, "dwi_volumes": s.dwi_volumes} for s in unit.sequences]}


def _predict_unit(unit, paths: dict, settings: dict, root: Path, predictor, fusion, preprocess: bool,
                  registration: str, out_dir: Path) -> dict:
    """Predict one unit and write its files (the mask sidecar last); on failure none of them is left.
    The dataset's own files are written with the first unit, so a run where every unit fails writes nothing."""
    import json

    from mome.inference.api import predict
    from mome.inference.outputs import save_image
    from mome.inference.subject import predict_subject
    from mome.utils.atomic import remove_empty_folders, write_text_atomic

    with tempfile.TemporaryDirectory(prefix="mome-bids-") as tmp:
        inputs = [load_sequence(s, Path(tmp)) for s in unit.sequences]
        if len(inputs) > 1:
            result = predict_subject(inputs, predictor, rule=fusion, preprocess=preprocess,
                                     registration=registration)
        else:
            result = predict(inputs[0], predictor, preprocess=preprocess, registration=registration)
    stats = result.stats
    stats["model"] = settings["model"]
    stats["input"] = [s["source"] for s in settings["sequences"]]
    for seq, source in zip(stats.get("sequences", []), stats["input"]):
        seq["input"] = source
    sources = [s.path for s in unit.sequences]
    meta = sidecar(unit, sources, root, stats, settings)
    folder = paths["mask"].parent
    created = [a for a in [folder, *folder.parents] if not a.exists()]
    written = []
    write_dataset_files(out_dir, root)
    try:
        for kind, img in (("mask", result.mask), ("probseg", result.probabilities)):
            save_image(img, paths[kind], overwrite=True)
            written.append(paths[kind])
        write_text_atomic(paths["probseg_sidecar"], json.dumps(probseg_sidecar(sources, root), indent=2) + "\n",
                          overwrite=True)
        written.append(paths["probseg_sidecar"])
        write_text_atomic(paths["sidecar"], json.dumps(meta, indent=2, default=str) + "\n", overwrite=True)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        remove_empty_folders(created)
        raise
    return stats


def unit_report_path(out_dir: Path, unit) -> Path:
    return out_dir / f"{unit.name}.html"


def write_unit_report(unit, paths: dict, root: Path, out_dir: Path) -> Path:
    """A unit's HTML report, from its written derivatives and its sources (nothing is predicted again)."""
    import json

    import nibabel as nib
    import numpy as np

    from mome.report.html import subject_report

    meta = json.loads(paths["sidecar"].read_text())
    mask_img = nib.load(str(paths["mask"]))
    sequences = []
    for seq in unit.sequences:
        if seq.dwi_volumes is not None:
            continue  # a 4D series: its b ~ 1000 mean is not kept; the other sequences are shown
        img = nib.load(str(seq.path))
        if img.shape[:3] == mask_img.shape[:3] and np.allclose(img.affine, mask_img.affine, atol=1e-3):
            sequences.append((f"{seq.modality} ({seq.path.name})", np.asarray(img.dataobj, dtype=np.float32)))
    if not sequences:  # e.g. a 4D DWI alone: show the mask on itself rather than nothing
        sequences = [("mask", np.asarray(mask_img.dataobj, dtype=np.float32))]
    return subject_report(unit_report_path(out_dir, unit), title=unit.name, sequences=sequences,
                          mask=np.asarray(mask_img.dataobj), affine=mask_img.affine,
                          stats=meta["LesionStatistics"], overwrite=True)


def run_group(bids_root, out_dir, *, overwrite: bool = False, echo: Callable[[str], None] = print) -> Path:
    """Write ``OUT_DIR/lesion_stats.tsv``: one row per unit of the dataset (``missing`` where the participant
    level has not run). A rerun that would write the same table does nothing."""
    from mome.utils.atomic import write_text_atomic

    root, out_dir = check_bids_root(bids_root), Path(out_dir)
    check_out_dir(out_dir, root)
    if not (out_dir / "dataset_description.json").is_file():
        from mome.errors import InputError

        raise InputError(f"{out_dir} has no participant-level outputs yet; run the participant level first")
    layout = open_layout(root)
    units = find_units(layout, select_subjects(layout, None, None))
    found = {(r["participant_id"], r["session_id"]): r for r in group_rows(out_dir)}
    rows = []
    for unit in units:
        key = (f"sub-{unit.subject}", f"ses-{unit.session}" if unit.session else "n/a")
        rows.append(found.pop(key, {"participant_id": key[0], "session_id": key[1], "status": "missing"}))
    rows += list(found.values())  # derivatives of units no longer in the raw dataset are still reported
    for row in rows:
        name = row["participant_id"] + ("" if row["session_id"] == "n/a" else f"_{row['session_id']}")
        if (out_dir / f"{name}.html").is_file():
            row["report"] = f"{name}.html"
    from mome.report.html import cohort_html

    texts = {out_dir / GROUP_TSV: group_table(rows), out_dir / COHORT_HTML: cohort_html(rows)}
    path = out_dir / GROUP_TSV
    if all(p.is_file() and p.read_text() == t for p, t in texts.items()):
        echo(f"{path} is up to date ({len(rows)} row(s))")
        return path
    for p, t in texts.items():
        if p.exists() and p.read_text() != t and not overwrite:
            raise OutputExistsError(f"{p} already exists with other content; pass --overwrite to replace it")
    for p, t in texts.items():
        write_text_atomic(p, t, overwrite=True)
    missing = sum(r["status"] == "missing" for r in rows)
    echo(f"wrote {path} and {out_dir / COHORT_HTML}: {len(rows)} row(s)"
         + (f", {missing} not segmented yet" if missing else ""))
    return path
