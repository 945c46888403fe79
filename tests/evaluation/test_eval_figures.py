"""Figures write real PNGs atomically, refuse to overwrite, and check their inputs first."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation_helpers import paper_result

from mome.errors import ConfigError, InputError, OutputExistsError
from mome.evaluation.figures import plot_expert_usage, plot_radar, plot_tsne, radar_scores

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 2000


def test_radar_from_results(tmp_path, small_result):
    systems = {"nnU-Net": paper_result("nnU-Net"), "MoME": paper_result("MoME", scale=1.05)}
    scores = radar_scores(systems)  # seen tasks: 5 modalities + 3 lesion groups, as Fig. 2a
    assert list(scores["MoME"]) == ["T1", "T2", "T1ce", "FLAIR", "DWI", "Tumour", "WMH", "Stroke"]
    assert scores["nnU-Net"]["T2"] == pytest.approx((0.8868 + 0.4219) / 2)  # unseen Tumour2/T2 left out
    out = plot_radar(scores, tmp_path / "radar.png")
    assert _is_png(out)
    with pytest.raises(OutputExistsError):
        plot_radar(scores, out)
    assert radar_scores({"a": small_result}) == {"a": pytest.approx(
        {"T1": 0.45, "FLAIR": 0.9, "WMH": 0.7, "Stroke": 0.4})}


def test_radar_bad_inputs(tmp_path):
    with pytest.raises(ConfigError, match=".png"):
        plot_radar({"a": {"x": 1, "y": 1, "z": 1}}, tmp_path / "radar.jpg")
    with pytest.raises(InputError, match=">= 3 axes"):
        plot_radar({"a": {"x": 1, "y": 1}}, tmp_path / "radar.png")
    assert not list(tmp_path.iterdir())


def test_tsne_panels_and_separation(tmp_path):
    rng = np.random.default_rng(0)
    n = 24
    mods = np.array(["T1", "FLAIR", "DWI"] * 8)
    lesions = np.array(["tumour"] * 12 + ["stroke_acute"] * 12)
    clustered = rng.normal(size=(n, 8)) + 6.0 * (mods[:, None] == np.array(["T1", "FLAIR", "DWI", "x"] * 2)[None])
    noise = rng.normal(size=(n, 8))
    out = plot_tsne({"MoME gate": (clustered, mods, lesions), "nnU-Net": (noise, mods, lesions)},
                    tmp_path / "tsne.png", seed=0)
    assert _is_png(tmp_path / "tsne.png")
    assert out["MoME gate"]["embedding"].shape == (n, 2)
    assert out["MoME gate"]["silhouette_modality"] > 0.3 > out["nnU-Net"]["silhouette_modality"]
    with pytest.raises(InputError, match="labels"):
        plot_tsne({"x": (noise, mods[:5], lesions)}, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_expert_usage_heatmaps(tmp_path):
    without = np.full((5, 5), 0.2)
    without[:, 0] = 0.9  # degenerated: one expert does everything
    out = plot_expert_usage({"without curriculum": without, "with curriculum": np.eye(5)}, tmp_path / "gate.png")
    assert _is_png(out)
    with pytest.raises(InputError, match=r"\[input modality x expert\]"):
        plot_expert_usage({"a": np.ones((5, 4))}, tmp_path / "bad.png")
    with pytest.raises(InputError, match="NaN"):
        plot_expert_usage({"a": np.full((5, 5), np.nan)}, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["gate.png"]  # no temporary left behind
