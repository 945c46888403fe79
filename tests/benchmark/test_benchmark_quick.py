"""End to end: `mome benchmark --preset quick` (synthesise, train MoME, the single U-Net and SAM-Med3D, predict,
evaluate)."""

from __future__ import annotations

import json

import pytest

from mome.cli.main import app


@pytest.mark.slow
def test_quick_benchmark_writes_every_table_and_figure(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    monkeypatch.setenv("MOME_TCMALLOC", "0")
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["benchmark", "--preset", "quick", "--out", str(out), "--seed", "0"])
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    for title in ("Table 1", "Table 2", "Supplementary Table I"):
        assert title in report
    results = json.loads((out / "results.json").read_text())
    assert set(results["tables"]) >= {"table1", "table2", "supplementary_table1"}
    assert set(results["summaries"]) == {"mome", "single", "sam-med3d"}
    clicks = results["interactive"]["sam-med3d"]  # the interactive row: Dice after each of the 10 clicks
    assert clicks["clicks"] == 10 and len(clicks["mean_dice_per_click"]) == 10 and clicks["rule"] == "ritm"
    assert "interactive, not automatic" in report
    assert "## The paper's claims" in report and "| Table 1: seen:task | MoME | > nnU-Net (single) |" in (
        out / "fidelity.md").read_text()
    assert any(c["claim"] == "Table 1: seen:task" and c["b"] == "single" for c in results["fidelity"])
    assert results["tables"]["table1"]["rows"][0]["intervals"]["MoME"]  # every cell carries its interval
    assert results["provenance"]["seed"] == 0 and "torch" in results["provenance"]["versions"]
    assert results["provenance"]["inference"] == {"precision": "fp32", "patch_size": "whole"}
    for fig in ("radar.png", "tsne.png"):
        assert (out / "figures" / fig).stat().st_size > 1000
    # every test image was predicted by every system, in the image's geometry
    n_test = sum(1 for line in (out / "data" / "collection.json").read_text().split('"split": "test"')) - 1
    for system in ("mome", "single", "sam-med3d"):
        assert len(list((out / "predictions" / system).glob("*.nii.gz"))) == n_test
    # a finished benchmark is refused without --overwrite, with a one-line error
    again = CliRunner().invoke(app, ["benchmark", "--preset", "quick", "--out", str(out)])
    assert again.exit_code != 0


def test_unknown_benchmark_preset_and_system(tmp_path):
    from mome.benchmark import run_benchmark
    from mome.benchmark.runner import check_systems
    from mome.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown benchmark preset"):
        run_benchmark("huge", tmp_path / "b")
    with pytest.raises(ConfigError, match="unknown system"):
        check_systems(["mome", "nope"])
    assert not (tmp_path / "b").exists()
