"""HTML reports (fMRIPrep style): one page per subject, one per cohort.

A subject page holds the lesion statistics, the QC warnings, the gate's expert shares, the fusion of several
sequences, overlay slices of every sequence with the mask (and of the uncertainty map), and an interactive
NiiVue viewer (:mod:`mome.report.viewer`). The page is written with ``niivue.umd.js`` beside it and needs
nothing else: no network, no server. The cohort page is a table of every subject's statistics and warnings
with links to the subject pages.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

import numpy as np

from mome.report.slices import figure_png, lesion_centre, overlay_figure
from mome.report.viewer import (ERROR_SCRIPT, NIIVUE_FILE, NIIVUE_VERSION, VIEWER_SCRIPT, volume_base64,
                                write_niivue)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 16px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
.warn { color: #a40000; } .ok { color: #1a6b1a; }
.bar { display: inline-block; height: 12px; background: #3465a4; vertical-align: middle; }
img.slices { width: 100%; }
#viewer-box { width: 100%; height: 480px; background: #000; }
footer { margin-top: 2em; color: #777; font-size: 0.85em; }
"""


def _e(value) -> str:
    return html.escape(str(value))


def _page(title: str, body: str, scripts: str = "") -> str:
    import mome

    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{_e(title)}</title>\n"
            f"<style>{_STYLE}</style>\n<script>{ERROR_SCRIPT}</script>\n</head>\n<body>\n{body}\n<footer>mome {_e(mome.__version__)}; 3D viewer: "
            f"NiiVue {NIIVUE_VERSION} (BSD-2-Clause)</footer>\n{scripts}</body>\n</html>\n")


def _stats_section(stats: dict) -> str:
    volumes = stats.get("lesion_volumes_ml") or []
    largest = ", ".join(f"{v:.2f}" for v in volumes[:10]) + (" ..." if len(volumes) > 10 else "")
    rows = [("lesion volume", f"{stats.get('lesion_volume_ml', 0.0):.2f} ml"),
            ("lesions (26-connected)", stats.get("lesion_count", 0)),
            ("largest lesions (ml)", largest or "none"),
            ("brain volume", f"{stats.get('brain_volume_ml', 0.0):.0f} ml"),
            ("model", stats.get("model")), ("preprocessed (MNI)", stats.get("preprocessed"))]
    if stats.get("uncertainty_scan") is not None:
        rows.append(("mean uncertainty in the lesions", f"{stats['uncertainty_scan']:.3f}"))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<h2>Statistics</h2>\n<table id=\"stats\">{body}</table>\n"


def _qc_section(stats: dict) -> str:
    warnings = (stats.get("qc") or {}).get("warnings", [])
    if not warnings:
        return "<h2>QC</h2>\n<p class=\"ok\" id=\"qc\">no warning</p>\n"
    items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
    return f"<h2>QC</h2>\n<ul class=\"warn\" id=\"qc\">{items}</ul>\n"


def _shares_table(shares: dict) -> str:
    return "<table>" + "".join(
        f"<tr><th>{_e(name)}</th><td><span class=\"bar\" style=\"width:{200 * share:.0f}px\"></span> "
        f"{100 * share:.0f}%</td></tr>" for name, share in shares.items()) + "</table>"


def _gate_section(stats: dict) -> str:
    parts = []
    if stats.get("expert_weight_share"):
        parts.append(f"<p>implicit modality: <b>{_e(stats.get('implicit_modality'))}</b></p>"
                     + _shares_table(stats["expert_weight_share"]))
    for seq in stats.get("sequences") or []:
        if seq.get("expert_weight_share"):
            parts.append(f"<h3>{_e(Path(str(seq['input'])).name)}</h3><p>declared {_e(seq.get('declared_modality'))}, "
                         f"implicit <b>{_e(seq.get('implicit_modality'))}</b></p>"
                         + _shares_table(seq["expert_weight_share"]))
    if not parts:
        return ""
    return "<h2>Gate: share of each modality expert</h2>\n" + "\n".join(parts) + "\n"


def _fusion_section(stats: dict) -> str:
    seqs = stats.get("sequences") or []
    if not seqs:
        return ""
    fusion = stats.get("fusion") or {}
    rows = []
    for seq in seqs:
        weight = seq.get("fusion_weight")
        rows.append(f"<tr><td>{_e(Path(str(seq['input'])).name)}</td><td>{_e(seq.get('modality_used'))}</td>"
                    f"<td>{'' if weight is None else f'{weight:.3f}'}</td>"
                    f"<td>{seq.get('lesion_volume_ml', 0.0):.2f}</td></tr>")
    rows = "".join(rows)
    return (f"<h2>Fusion of {len(seqs)} sequences ({_e(fusion.get('rule'))})</h2>\n<table><tr><th>sequence</th>"
            f"<th>modality</th><th>weight</th><th>its own lesion volume (ml)</th></tr>{rows}</table>\n")


def subject_report(path: str | os.PathLike, *, title: str, sequences: list[tuple[str, np.ndarray]],
                   mask: np.ndarray, affine: np.ndarray, stats: dict, uncertainty: np.ndarray | None = None,
                   overwrite: bool = False) -> Path:
    """Write one subject's report to ``path`` (and ``niivue.umd.js`` beside it).

    Args:
        sequences: (label, volume) of every sequence on the mask's grid (the first is the viewer's image).
        mask: the lesion mask; ``affine`` its (and the sequences') voxel-to-world affine.
        stats: the stats JSON of the prediction (volumes, QC, gate shares, fusion).
        uncertainty: the voxel uncertainty map on the same grid, or ``None``.
    """
    from mome.utils.atomic import check_writable, write_text_atomic

    path = check_writable(path, overwrite)
    if not sequences:
        raise ValueError("a report needs at least one sequence on the mask's grid")
    centre = lesion_centre(mask, affine)
    rows = [(label, data, np.asarray(mask) > 0, "mask") for label, data in sequences]
    if uncertainty is not None:
        rows.append((f"{sequences[0][0]} uncertainty", sequences[0][1], np.asarray(uncertainty), "heat"))
    png = figure_png(overlay_figure(rows, affine, centre))
    volumes = [{"name": "image.nii.gz", "colormap": "gray", "opacity": 1.0, "cal_min": 0, "cal_max": 255,
                "base64": volume_base64(sequences[0][1], affine, "image")},
               {"name": "mask.nii.gz", "colormap": "red", "opacity": 0.6, "cal_min": 0, "cal_max": 1,
                "base64": volume_base64(mask, affine, "mask")}]
    body = (f"<h1>{_e(title)}</h1>\n<p>{len(sequences)} sequence(s): "
            f"{_e(', '.join(label for label, _ in sequences))}</p>\n"
            + _stats_section(stats) + _qc_section(stats) + _fusion_section(stats) + _gate_section(stats)
            + "<h2>Slices through the lesion centroid (mask in red"
            + ("; uncertainty in the last row" if uncertainty is not None else "") + ")</h2>\n"
            + f"<img class=\"slices\" id=\"slices\" alt=\"slices\" src=\"data:image/png;base64,"
              f"{base64.b64encode(png).decode('ascii')}\">\n"
            + "<h2>3D viewer</h2>\n<p>Drag to move the crosshair; scroll to change the slice.</p>\n"
            + "<div id=\"viewer-box\"><canvas id=\"viewer\"></canvas></div>\n"
            + "<p id=\"viewer-status\" data-state=\"loading\">viewer: loading</p>\n")
    scripts = (f"<script type=\"application/json\" id=\"viewer-volumes\">{json.dumps(volumes)}</script>\n"
               f"<script src=\"{NIIVUE_FILE}\"></script>\n<script>{VIEWER_SCRIPT}</script>\n")
    write_niivue(path.parent)
    write_text_atomic(path, _page(f"mome: {title}", body, scripts), overwrite=True)
    return path


def cohort_html(rows: list[dict], *, title: str = "mome cohort report") -> str:
    """The cohort page: one row per unit (the group TSV's columns), linked to ``row['report']`` when set."""
    volumes = [r["lesion_volume_ml"] for r in rows if isinstance(r.get("lesion_volume_ml"), (int, float))]
    warned = sum(1 for r in rows if r.get("qc_warnings") not in (None, "", "n/a"))
    lines = []
    for r in rows:
        name = r["participant_id"] + ("" if r.get("session_id") in (None, "n/a") else f" {r['session_id']}")
        link = f"<a href=\"{_e(r['report'])}\">{_e(name)}</a>" if r.get("report") else _e(name)
        vol = r.get("lesion_volume_ml")
        warn = r.get("qc_warnings")
        lines.append(f"<tr><td>{link}</td><td>{_e(r.get('status'))}</td><td>{_e(r.get('sequences', ''))}</td>"
                     f"<td>{'' if vol is None else f'{vol:.2f}'}</td><td>{_e(r.get('lesion_count', ''))}</td>"
                     f"<td class=\"{'warn' if warn not in (None, '', 'n/a') else 'ok'}\">"
                     f"{_e(warn if warn not in (None, '', 'n/a') else 'none')}</td></tr>")
    summary = (f"<p>{len(rows)} subject(s)/session(s); {len(volumes)} segmented; {warned} with QC warnings"
               + (f"; lesion volume median {np.median(volumes):.2f} ml (range {min(volumes):.2f}-{max(volumes):.2f})"
                  if volumes else "") + "</p>")
    body = (f"<h1>{_e(title)}</h1>\n{summary}\n<table id=\"cohort\"><tr><th>subject</th><th>status</th>"
            f"<th>sequences</th><th>lesion ml</th><th>lesions</th><th>QC warnings</th></tr>{''.join(lines)}</table>")
    return _page(title, body)
