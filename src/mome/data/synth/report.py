"""Measurements and pictures of a generated benchmark: lesion CNR and volume per case and per task
(``contrast.csv`` / ``contrast.md``), and a montage PNG of one case per task."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from scipy import ndimage

CASE_FIELDS = ("id", "dataset", "modality", "task", "split", "seen", "lesion_cnr", "lesion_volume_ml")
TASK_HEADER = ("task", "seen", "train images", "test images", "lesion CNR mean", "lesion CNR sd",
               "lesion volume ml mean")


def lesion_cnr(image: np.ndarray, lesion: np.ndarray, brain: np.ndarray, spacing_mm: float) -> float:
    """Contrast-to-noise ratio of a lesion against the tissue around it.

    ``(mean(lesion) - mean(ring)) / sd(ring)``, where the ring is the brain within ~4 mm (at least 2
    voxels) outside the lesion. The ring's sd holds noise and tissue variation alike, so this is the
    visibility of the lesion against its surroundings; the sign says brighter (+) or darker (-).

    Args:
        image: intensities.
        lesion: binary lesion mask.
        brain: boolean brain mask.
        spacing_mm: voxel size (mm).

    Returns:
        The CNR, or NaN when the lesion or its ring is empty.
    """
    lesion = np.asarray(lesion) > 0
    if not lesion.any():
        return float("nan")
    ring = ndimage.binary_dilation(lesion, iterations=max(2, int(round(4 / spacing_mm)))) & ~lesion & brain
    if ring.sum() < 2:
        return float("nan")
    sd = float(image[ring].std())
    return (float(image[lesion].mean()) - float(image[ring].mean())) / sd if sd > 0 else float("nan")


def case_row(case, image: np.ndarray, label: np.ndarray, brain: np.ndarray, spacing_mm: float) -> dict:
    """One row of ``cases_contrast.csv`` for a :class:`~mome.data.collection.Case`."""
    return {"id": case.id, "dataset": case.dataset, "modality": case.modality, "task": case.task,
            "split": case.split, "seen": case.seen,
            "lesion_cnr": round(lesion_cnr(image, label, brain, spacing_mm), 4),
            "lesion_volume_ml": round(float((label > 0).sum()) * spacing_mm**3 / 1000.0, 4)}


def task_table(rows: list[dict]) -> list[list]:
    """Per task (in first-seen order): seen flag, image counts, mean and sd lesion CNR, mean volume (ml)."""
    tasks: dict[str, list[dict]] = {}
    for r in rows:
        tasks.setdefault(r["task"], []).append(r)
    out = []
    for task, rs in tasks.items():
        cnr = np.array([r["lesion_cnr"] for r in rs], float)
        out.append([task, "seen" if rs[0]["seen"] else "unseen", sum(r["split"] == "train" for r in rs),
                    sum(r["split"] == "test" for r in rs), f"{np.nanmean(cnr):.2f}", f"{np.nanstd(cnr):.2f}",
                    f"{np.mean([r['lesion_volume_ml'] for r in rs]):.1f}"])
    return out


def write_tables(folder: Path, rows: list[dict], spacing_mm: float) -> None:
    """Write ``cases_contrast.csv`` (per case), ``contrast.csv`` and ``contrast.md`` (per task) in ``folder``."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CASE_FIELDS), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    (folder / "cases_contrast.csv").write_text(buf.getvalue())
    table = task_table(rows)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([TASK_HEADER, *table])
    (folder / "contrast.csv").write_text(buf.getvalue())
    md = ["| " + " | ".join(TASK_HEADER) + " |", "|" + "---|" * len(TASK_HEADER)]
    md += ["| " + " | ".join(str(v) for v in line) + " |" for line in table]
    (folder / "contrast.md").write_text(
        f"Lesion contrast-to-noise ratio per image, (lesion mean - ring mean) / ring sd, ring = brain within "
        f"~4 mm around the lesion; {spacing_mm:g} mm grid; each image measured against its own label "
        f"(BraTS/T1ce: tumour core).\n\n" + "\n".join(md) + "\n")


def montage(path: Path, panels: list[tuple[str, np.ndarray, np.ndarray]], title: str) -> None:
    """Save a PNG grid of axial slices with the label contour in red.

    Args:
        path: output PNG.
        panels: ``(title, image slice, label slice)`` per panel, 2D arrays indexed (x, y) in RAS.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 6
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.9, rows * 2.25), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, img, lab) in zip(axes.ravel(), panels):
        vmax = float(np.percentile(img[img > 0], 99.5)) if np.any(img > 0) else 1.0
        ax.imshow(np.rot90(img), cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")  # anterior up
        if lab.any():
            ax.contour(np.rot90(lab.astype(float)), levels=[0.5], colors="r", linewidths=0.6)
        ax.set_title(name, fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)
