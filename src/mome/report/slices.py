"""Orthogonal slices with an overlay, as PNG bytes: the static figures of the HTML reports and the preview.

Volumes are shown in RAS voxel order (neurological view: the patient's right on the right) with each slice's
true aspect ratio; the slices pass through the centroid of the lesion (the volume centre without one).
matplotlib's Figure + Agg canvas are used directly: no pyplot global state, safe in batch runs and without
a display.
"""

from __future__ import annotations

import io

import numpy as np


def lesion_centre(mask: np.ndarray, affine: np.ndarray) -> list[int]:
    """The RAS voxel through which the slices pass: the lesion centroid, or the volume centre."""
    from scipy import ndimage

    from mome.inference.geometry import Reorientation

    lesion = Reorientation.from_affine(affine).to_ras(np.asarray(mask) > 0)
    if lesion.any():
        return [int(round(c)) for c in ndimage.center_of_mass(lesion)]
    return [n // 2 for n in lesion.shape]


def orthogonal_views(image: np.ndarray, overlay: np.ndarray, affine: np.ndarray, centre: list[int]):
    """[(name, image slice, overlay slice, aspect)] for the sagittal, coronal and axial slices through
    ``centre`` (RAS voxel), plus the display range (1st and 99th percentile of the non-zero voxels)."""
    from mome.inference.geometry import Reorientation, voxel_spacing

    reor = Reorientation.from_affine(affine)
    img = reor.to_ras(np.asarray(image, dtype=np.float32))
    ovl = reor.to_ras(np.asarray(overlay))
    sx, sy, sz = reor.spacing_to_ras(voxel_spacing(affine))
    c = [min(max(int(v), 0), n - 1) for v, n in zip(centre, img.shape)]
    inside = img[img != 0]
    lo, hi = np.percentile(inside, [1, 99]) if inside.size else (0.0, 1.0)
    views = [("sagittal", img[c[0]], ovl[c[0]], sz / sy), ("coronal", img[:, c[1]], ovl[:, c[1]], sz / sx),
             ("axial", img[:, :, c[2]], ovl[:, :, c[2]], sy / sx)]
    return views, (float(lo), float(hi) if hi > lo else float(lo) + 1.0), c


def overlay_figure(rows: list[tuple[str, np.ndarray, np.ndarray, str]], affine: np.ndarray, centre: list[int],
                   title: str = "", width: float = 12.0):
    """A figure with one row of three slices per (label, image, overlay, kind); kind ``mask`` draws the
    overlay in red (alpha 0.5), ``heat`` as a hot colour map over [0, its 99th percentile] (values under 5% of it clear)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, 4.0 * len(rows) + (0.4 if title else 0.0)), dpi=100)
    FigureCanvasAgg(fig)
    for r, (label, image, overlay, kind) in enumerate(rows):
        views, (lo, hi), c = orthogonal_views(image, overlay, affine, centre)
        top = float(np.percentile(overlay[overlay > 0], 99)) if kind == "heat" and (overlay > 0).any() else 1.0
        for k, (name, sl, ov, aspect) in enumerate(views):
            ax = fig.add_subplot(len(rows), 3, 3 * r + k + 1)
            ax.imshow(sl.T, cmap="gray", origin="lower", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
            if kind == "mask":
                shown = ov.T > 0
                ax.imshow(np.ma.masked_where(~shown, shown), cmap=ListedColormap(["red"]), origin="lower",
                          alpha=0.5, aspect=aspect, interpolation="nearest", vmin=0, vmax=1)
            else:
                ax.imshow(np.ma.masked_where(ov.T <= 0.05 * top, ov.T), cmap="hot", origin="lower", alpha=0.7,
                          aspect=aspect, interpolation="nearest", vmin=0, vmax=max(top, 1e-6))
            ax.set_title(f"{label + ': ' if label else ''}{name} slice {c[k]}", fontsize=10)
            ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
