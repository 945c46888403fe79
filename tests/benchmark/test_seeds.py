"""``mome benchmark --seeds``: one run per seed on shared data, reuse of finished seeds, the across-seed summary."""

from __future__ import annotations

import json

import pytest

from mome.benchmark import seeds as seeds_mod
from mome.errors import ConfigError


def _fake_results(seed):
    value = 0.30 + 0.01 * seed
    return {"tables": {"table1": {"title": "Table 1", "systems": ["MoME", "single"],
                                  "rows": [{"labels": ["Task-level"], "values": {"MoME": value, "single": 0.2}}]}},
            "fidelity": [{"claim": "Table 1: seen:task", "a": "mome", "b": "single", "paper_a": 0.70, "paper_b": 0.66,
                          "equivalence": False, "difference": value - 0.2, "interval": [0.05, 0.15],
                          "p_bootstrap": 0.0, "p_wilcoxon": 0.001, "verdict": "holds" if seed < 2 else "within noise"}],
            "timings_s": {"train": 60.0 * seed, "tables+figures": 30.0}}


def test_run_seeds_shares_the_data_and_reuses_finished_seeds(tmp_path, monkeypatch):
    calls = []

    def fake_run(preset, folder, **kw):
        calls.append((folder.name, kw["seed"], kw["data"], kw["data_seed"]))
        folder.mkdir(parents=True)
        (folder / "benchmark.json").write_text(json.dumps({"finished": True}))
        (folder / "results.json").write_text(json.dumps(_fake_results(kw["seed"])))
        return _fake_results(kw["seed"])

    monkeypatch.setattr("mome.benchmark.runner.run_benchmark", fake_run)
    summary = seeds_mod.run_seeds("quick", tmp_path, [3, 1, 2], log=lambda m: None)
    assert calls == [(f"seed-{s}", s, tmp_path / "data", 3) for s in (3, 1, 2)]  # data: the first seed's
    cell = summary["cells"]["table1"]["rows"][0]["values"]["MoME"]
    assert cell["seeds"] == 3 and cell["mean"] == pytest.approx(0.32) and cell["sd"] == pytest.approx(0.01)
    assert summary["fidelity"][0]["verdict"] == "holds in 1, within noise in 2"  # only seed 1 < 2 holds
    assert "0.3200 +- 0.0100" in (tmp_path / "seeds.md").read_text()
    assert "(3 seeds)" in (tmp_path / "fidelity.md").read_text()
    assert summary["wall_minutes"] == {1: pytest.approx(1.5), 2: pytest.approx(2.5), 3: pytest.approx(3.5)}
    assert "| 3 | 3.5 |" in (tmp_path / "seeds.md").read_text()
    calls.clear()
    seeds_mod.run_seeds("quick", tmp_path, [3, 1, 2], log=lambda m: None)
    assert calls == []  # every seed finished: reused, nothing run again


@pytest.mark.parametrize("text", ["0", "0,0", "a,b", "-1,2"])
def test_bad_seeds(text):
    with pytest.raises(ConfigError):
        seeds_mod.parse_seeds(text)
