"""What ``mome predict`` writes: the mask and probability NIfTIs, statistics, and a preview PNG.

Every image is written on the input's exact grid (shape, affine, qform/sform codes) and every file
atomically; nothing is replaced unless ``overwrite``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from mome.utils.atomic import atomic_path, write_text_atomic

# 26-connectivity: voxels touching by a face, an edge or a corner belong to the same lesion
_CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)


# -- images --------------------------------------------------------------------------------------

def image_like(data: np.ndarray, reference, dtype, description: str = ""):
    """A NIfTI-1 image holding ``data`` on ``reference``'s grid (same affine and qform/sform codes).

    Args:
        data: (X, Y, Z) array with ``reference``'s shape.
        reference: the input nibabel image.
        dtype: on-disk type (``np.uint8`` for masks, ``np.float32`` for probabilities).
        description: NIfTI ``descrip`` field (<= 80 characters).
    """
    import nibabel as nib

    data = np.asarray(data).astype(dtype, copy=False)
    if data.shape != tuple(reference.shape[:3]):
        raise ValueError(f"data shape {data.shape} differs from the reference {reference.shape[:3]}")
    if isinstance(reference, nib.Nifti1Image):
        header = reference.header.copy()
        if len(header.get_data_shape()) != 3:
            header.set_data_shape(data.shape)
    else:  # e.g. an MGH image passed to the Python API: keep only its affine
        header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_slope_inter(1.0, 0.0)
    header["cal_min"], header["cal_max"] = 0.0, 0.0
    header["descrip"] = description[:79].encode()
    # nibabel keeps the copied header's qform/sform untouched when the affine equals its best affine
    img = nib.Nifti1Image(data, reference.affine, header=header)
    img.header.set_xyzt_units("mm")
    return img


def save_image(img, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a nibabel image atomically, refusing to replace ``path`` unless ``overwrite``."""
    import nibabel as nib

    with atomic_path(path, overwrite=overwrite) as tmp:
        nib.save(img, str(tmp))
    return Path(path)


# -- statistics ----------------------------------------------------------------------------------

def lesion_stats(mask: np.ndarray, affine: np.ndarray, *, brain_mask: np.ndarray | None = None,
                 gates: np.ndarray | None = None, expert_names: list[str] | None = None,
                 gate_activation: str | None = None) -> dict:
    """Lesion volume, lesion count and the gate's per-expert weight share.

    Args:
        mask: (X, Y, Z) label map; every non-zero voxel is lesion.
        affine: voxel-to-world affine (mm), for the voxel volume.
        brain_mask: (X, Y, Z) booleans; default every voxel.
        gates: (N, C, X, Y, Z) gate weights of a MoME on the same grid, or ``None``.
        expert_names: the N experts' modality names.
        gate_activation: ``softmax`` or ``identity`` (see :func:`expert_weight_share`).

    Returns:
        JSON-ready dict: ``lesion_volume_ml``, ``lesion_count`` (26-connected components),
        ``lesion_volumes_ml`` (per lesion, largest first), ``voxel_volume_ml``, ``brain_volume_ml`` and,
        for a MoME, ``expert_weight_share`` (over the brain), ``expert_weight_share_in_lesion`` (over the
        predicted lesion, ``None`` without lesion) and ``implicit_modality`` (the largest share).
    """
    from scipy import ndimage

    lesion = np.asarray(mask) > 0
    voxel_ml = float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0
    labels, count = ndimage.label(lesion, structure=_CONNECTIVITY_26)
    sizes = np.bincount(labels.ravel())[1:] if count else np.zeros(0, dtype=np.int64)
    brain = np.ones(lesion.shape, bool) if brain_mask is None else np.asarray(brain_mask, dtype=bool)
    stats: dict = {
        "lesion_volume_ml": float(lesion.sum()) * voxel_ml,
        "lesion_count": int(count),
        "lesion_voxels": int(lesion.sum()),
        "lesion_volumes_ml": [float(s) * voxel_ml for s in sorted(sizes.tolist(), reverse=True)],
        "voxel_volume_ml": voxel_ml,
        "brain_volume_ml": float(brain.sum()) * voxel_ml,
    }
    if gates is not None and expert_names is not None:
        stats.update(gate_stats(gates, expert_names, gate_activation, brain, lesion))
    return stats


def gate_stats(gates: np.ndarray, expert_names: list[str], gate_activation: str | None,
               brain_mask: np.ndarray, lesion_mask: np.ndarray) -> dict:
    """The gate part of :func:`lesion_stats`, on the grid of ``gates`` (N, C, X, Y, Z).

    Returns:
        ``gate_activation``, ``expert_weight_share`` (over the brain), ``implicit_modality`` (the
        expert with the largest share) and ``expert_weight_share_in_lesion`` (``None`` without lesion).
    """
    share = expert_weight_share(gates, brain_mask, gate_activation)
    lesion = np.asarray(lesion_mask) > 0
    in_lesion = expert_weight_share(gates, lesion, gate_activation) if lesion.any() else None
    return {
        "gate_activation": gate_activation,
        "expert_weight_share": dict(zip(expert_names, share)),
        "implicit_modality": expert_names[int(np.argmax(share))],
        "expert_weight_share_in_lesion": None if in_lesion is None else dict(zip(expert_names, in_lesion)),
    }


def expert_weight_share(gates: np.ndarray, region: np.ndarray, activation: str | None) -> list[float]:
    """Each expert's share of the gate weight over ``region`` (the model's implicit modality guess).

    * ``softmax`` gates: the mean weight of expert i over the region's voxels and over the classes;
      the weights already sum to 1 over experts at every voxel, so the shares sum to 1.
    * ``identity`` (raw, possibly negative) gates: the mean magnitude |g_i| over the region's voxels
      and classes, normalised so the shares sum to 1 (how much each expert's logits are amplified,
      whatever the sign).

    Args:
        gates: (N, C, X, Y, Z) weights.
        region: (X, Y, Z) booleans (an empty region gives equal shares).
        activation: ``softmax`` or ``identity``.
    """
    n = gates.shape[0]
    region = np.asarray(region, dtype=bool)
    if not region.any():
        return [1.0 / n] * n
    values = gates[:, :, region]  # (N, C, V)
    if activation != "softmax":
        values = np.abs(values)
    means = values.astype(np.float64).mean(axis=(1, 2))
    total = means.sum()
    if total <= 0:
        return [1.0 / n] * n
    return [float(m / total) for m in means]


def write_stats_json(stats: dict, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write one image's statistics as indented JSON, atomically."""
    return write_text_atomic(path, json.dumps(stats, indent=2) + "\n", overwrite=overwrite)


def stats_row(stats: dict) -> dict:
    """Flatten one image's statistics into a CSV row (per-lesion list dropped, shares as columns)."""
    row = {k: v for k, v in stats.items()
           if not isinstance(v, (dict, list)) and k not in ("voxel_volume_ml",)}
    for name, share in (stats.get("expert_weight_share") or {}).items():
        row[f"share_{name}"] = share
    return row


def write_stats_csv(rows: list[dict], path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write rows (dicts, possibly with different keys) as one CSV, columns in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return write_text_atomic(path, buf.getvalue(), overwrite=overwrite)


def _csv_value(v):
    return f"{v:.6g}" if isinstance(v, float) else v


# -- preview -------------------------------------------------------------------------------------

def save_preview(image: np.ndarray, mask: np.ndarray, affine: np.ndarray, path: str | os.PathLike, *,
                 title: str = "", overwrite: bool = False) -> Path:
    """PNG with three orthogonal slices (sagittal, coronal, axial) and the lesion mask in red.

    The slices pass through the centroid of the lesion, or through the volume centre when the mask is
    empty (:mod:`mome.report.slices`).
    """
    from mome.report.slices import lesion_centre, overlay_figure

    fig = overlay_figure([("", image, np.asarray(mask) > 0, "mask")], affine, lesion_centre(mask, affine), title,
                         width=12.0)
    with atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(str(tmp), format="png")
    return Path(path)
