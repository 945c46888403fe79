"""``generate_benchmark``: write a synthetic multi-modality brain-lesion benchmark (NIfTI + manifest)."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from mome.data.collection import Case, Collection
from mome.data.mni import mni_grid
from mome.data.synth import lesions as L
from mome.data.synth.anatomy import make_anatomy
from mome.data.synth.contrast import render
from mome.data.synth.datasets import DATASETS, DatasetSpec, get_synth_preset
from mome.errors import DataError
from mome.utils.atomic import atomic_path
from mome.utils.provenance import provenance

_MODELS = {
    "glioma": lambda a, r, aff, sh: L.glioma(a, r, aff),
    "wmh": lambda a, r, aff, sh: L.wmh(a, r, aff),
    "wmh_small": lambda a, r, aff, sh: L.wmh(a, r, aff, severity=r.uniform(0.25, 0.55)),
    "ms": lambda a, r, aff, sh: _ms_with_shapes(a, r, aff, sh),
    "acute_stroke": lambda a, r, aff, sh: L.acute_stroke(a, r, aff, sh.get("stroke")),
    "chronic_stroke": lambda a, r, aff, sh: L.chronic_stroke(a, r, aff, sh.get("stroke")),
    "wmh_mix": lambda a, r, aff, sh: _mix(a, r, aff),
}


def _ms_with_shapes(anat, rng, affine, shapes):
    comps = L.ms(anat, rng, affine)
    if shapes.get("ms") is not None and rng.random() < 0.5:
        comps["ms"] = np.maximum(comps["ms"], shapes["ms"].sample(rng, anat, affine))
    return comps


def _mix(anat, rng, affine):
    """WMH of several diseases (SVD-like caps, MS-like ovoids, small lacunar infarcts)."""
    comps = L.wmh(anat, rng, affine, severity=rng.uniform(0.3, 0.9))
    if rng.random() < 0.5:
        comps.update(L.ms(anat, rng, affine))
    if rng.random() < 0.3:
        comps.update(L.acute_stroke(anat, rng, affine))
    return comps


def generate_benchmark(preset: str, out_dir: str | os.PathLike, seed: int = 0,
                       lesion_masks: list[str | os.PathLike] | None = None, overwrite: bool = False,
                       progress=None) -> Collection:
    """Generate the benchmark into ``out_dir`` (written atomically) and return its collection.

    Args:
        preset: ``tiny``, ``quick``, ``cpu`` or ``paper`` (see :data:`SYNTH_PRESETS`).
        out_dir: output folder; refused if it exists unless ``overwrite``.
        seed: master seed; the same seed and preset give byte-identical files.
        lesion_masks: folders of real binary lesion masks in MNI space. Folders whose name contains
            "ms" give MS lesion shapes, the others stroke shapes.
        overwrite: replace an existing ``out_dir``.
        progress: optional callable(done, total, message).
    """
    cfg = get_synth_preset(preset)
    shapes = _shapes(lesion_masks or [])
    shape, affine = mni_grid(cfg.spacing_mm)
    jobs = [(di, ds, split, i) for di, ds in enumerate(DATASETS) for split in ("train", "test")
            for i in range((cfg.train_subjects if split == "train" else cfg.test_subjects)[ds.name])]
    cases: list[Case] = []
    rows: list[dict] = []
    montage_items: dict[str, tuple] = {}
    with atomic_path(out_dir, overwrite=overwrite) as tmp:
        (tmp / "images").mkdir(parents=True)
        (tmp / "labels").mkdir()
        for n, (di, ds, split, i) in enumerate(jobs):
            subject = f"{ds.name.lower()}_{split}{i:03d}"
            new_cases, new_rows, images = _subject(tmp, ds, di, split, i, subject, seed, cfg.spacing_mm,
                                                   affine, shapes)
            cases += new_cases
            rows += new_rows
            for case, img, lab in images:
                montage_items.setdefault(case.task, (case.id, img, lab))
            if progress:
                progress(n + 1, len(jobs), subject)
        collection = Collection(
            name=f"synthetic-{preset}",
            cases=cases,
            provenance=provenance(seed=seed, generator="mome.data.synth", preset=dataclasses.asdict(cfg),
                                  grid={"shape": list(shape), "affine": affine.tolist()},
                                  lesion_masks=[str(p) for p in (lesion_masks or [])]),
        )
        collection.save(tmp / "collection.json")
        _write_tables(tmp, rows, cases, cfg.spacing_mm)
        _montage(tmp / "montage.png", montage_items)
    final = Path(out_dir)
    for c in collection.cases:  # re-point paths from the temporary folder to the final one
        c.image = final / c.image.relative_to(c.image.parents[1])
        c.label = final / c.label.relative_to(c.label.parents[1])
    return collection


def _shapes(folders) -> dict[str, L.LesionShapes | None]:
    ms = [f for f in folders if "ms" in Path(f).name.lower()]
    stroke = [f for f in folders if f not in ms]
    return {"ms": L.LesionShapes(ms) if ms else None, "stroke": L.LesionShapes(stroke) if stroke else None}


def _subject(tmp: Path, ds: DatasetSpec, di: int, split: str, i: int, subject: str, seed: int,
             spacing: float, affine: np.ndarray, shapes) -> tuple[list[Case], list[dict], list]:
    from mome.utils.nifti import save_nifti

    split_i = 0 if split == "train" else 1
    rng = np.random.default_rng([seed, di, split_i, i])
    anat = make_anatomy(rng, spacing, atrophy=ds.atrophy * rng.uniform(0.6, 1.0))
    for attempt in range(6):
        comps = _MODELS[ds.model](anat, rng, affine, shapes)
        whole = sum(comps.values()) > 0.5
        core = sum(comps.get(k, 0) for k in ("enhancing", "necrosis")) > 0.5
        if whole.any() and (not ds.core_label_on or np.any(core)):
            break
    else:
        raise DataError(f"could not place a visible lesion for {subject} at {spacing} mm")
    labels = {"whole": whole.astype(np.uint8), "core": np.asarray(core, dtype=np.uint8)}
    label_paths = {}
    cases, rows, images = [], [], []
    for mi, modality in enumerate(ds.modalities):
        kind = "core" if modality in ds.core_label_on else "whole"
        if kind not in label_paths:
            rel = Path("labels") / f"{subject}{'_core' if kind == 'core' else ''}.nii.gz"
            save_nifti(labels[kind], affine, tmp / rel)
            label_paths[kind] = rel
        mrng = np.random.default_rng([seed, di, split_i, i, 100 + mi])
        img = render(anat, comps, modality, ds.profile, mrng)
        cid = f"{subject}_{modality}"
        rel_img = Path("images") / f"{cid}.nii.gz"
        save_nifti(img, affine, tmp / rel_img)
        case = Case(id=cid, image=tmp / rel_img, label=tmp / label_paths[kind], modality=modality,
                    dataset=ds.name, lesion_type=ds.lesion_type, split=split, seen=ds.seen, subject=subject)
        cases.append(case)
        rows.append(_contrast_row(case, img, labels[kind], anat, spacing))
        images.append((case, img, labels[kind]))
    return cases, rows, images


def _contrast_row(case: Case, img: np.ndarray, label: np.ndarray, anat, spacing: float) -> dict:
    """Lesion contrast-to-noise ratio vs a 2-voxel ring of surrounding brain, and tissue means."""
    lesion = label > 0
    ring = ndimage.binary_dilation(lesion, iterations=2) & ~lesion & anat.brain
    ring_sd = float(img[ring].std()) if ring.sum() > 1 else float("nan")
    cnr = (float(img[lesion].mean()) - float(img[ring].mean())) / ring_sd if ring.any() and ring_sd > 0 else float("nan")
    wm = (anat.wm > 0.9) & ~ndimage.binary_dilation(lesion, iterations=2)
    return {
        "id": case.id, "dataset": case.dataset, "modality": case.modality, "task": case.task,
        "split": case.split, "seen": case.seen, "lesion_cnr": cnr,
        "lesion_volume_ml": float(lesion.sum() * spacing**3 / 1000),
        "csf_over_wm": float(img[anat.ventricles].mean() / max(img[wm].mean(), 1e-6)) if wm.any() else float("nan"),
    }


def _write_tables(tmp: Path, rows: list[dict], cases: list[Case], spacing: float) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    (tmp / "cases_contrast.csv").write_text(buf.getvalue())
    tasks: dict[str, list[dict]] = {}
    for r in rows:
        tasks.setdefault(r["task"], []).append(r)
    header = ["task", "seen", "train", "test", "lesion CNR (mean)", "lesion CNR (sd)", "lesion volume ml (mean)"]
    lines = []
    for task, rs in tasks.items():
        cnr = np.array([r["lesion_cnr"] for r in rs], float)
        lines.append([task, "seen" if rs[0]["seen"] else "unseen", sum(r["split"] == "train" for r in rs),
                      sum(r["split"] == "test" for r in rs), f"{np.nanmean(cnr):.2f}", f"{np.nanstd(cnr):.2f}",
                      f"{np.mean([r['lesion_volume_ml'] for r in rs]):.1f}"])
    buf = io.StringIO()
    csv.writer(buf).writerows([header, *lines])
    (tmp / "contrast.csv").write_text(buf.getvalue())
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(str(v) for v in line) + " |" for line in lines]
    (tmp / "contrast.md").write_text(
        f"Lesion contrast-to-noise ratio (lesion mean - ring mean) / ring sd, ring = 2 voxels around the "
        f"lesion, {spacing:g} mm grid.\n\n" + "\n".join(md) + "\n")


def _montage(path: Path, items: dict[str, tuple]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(items)
    cols = 6
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.2, rows * 2.6))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, (task, (cid, img, lab)) in zip(np.ravel(axes), sorted(items.items())):
        z = int(np.argmax(lab.sum(axis=(0, 1)))) if lab.any() else img.shape[2] // 2
        sl = np.rot90(img[:, :, z])
        ax.imshow(sl, cmap="gray", vmin=0, vmax=np.percentile(img[img > 0], 99.5) if img.any() else 1)
        if lab[:, :, z].any():
            ax.contour(np.rot90(lab[:, :, z]), levels=[0.5], colors="r", linewidths=0.7)
        ax.set_title(task, fontsize=8)
    fig.suptitle("mome synthetic benchmark: one test case per task (red: label)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
