"""benchmarks/gate_routing.py's routing-over-training summary, on hand-written epoch logs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gate_routing.py"
MODS = ["T1", "T2", "FLAIR"]


def _script():
    spec = importlib.util.spec_from_file_location("gate_routing", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _log(folder: Path, epochs: list[list[list[float | None]]]) -> Path:
    """``epochs[k][m][e]``: expert e's gate weight on input modality m at epoch k (None: no sample)."""
    folder.mkdir()
    cols = [f"gate_{e}_on_{m}" for m in MODS for e in MODS]
    lines = [",".join(["epoch", "loss", *cols])]
    for k, w in enumerate(epochs):
        vals = ["" if w[i][j] is None else str(w[i][j]) for i in range(3) for j in range(3)]
        lines.append(",".join([str(k), "0.5", *vals]))
    (folder / "log.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_over_training_scores_routing_per_epoch(tmp_path):
    over_training = _script().over_training
    same = [[0.5, 0.2, 0.3]] * 3  # the gate ignores the input modality
    routed = [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]  # each modality to its own expert
    missing = [[0.5, 0.2, 0.3], [None, None, None], [0.5, 0.2, 0.3]]  # no T2 sample drawn this epoch
    rows = over_training(_log(tmp_path / "run", [same, routed, missing]))
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert rows[0]["margin"] == pytest.approx(0.0, abs=1e-12) and rows[0]["modalities"] == 3
    # routed: own 0.8 minus the others' 0.1, over the mean |w| 1/3 -> 2.1
    assert rows[1]["own_top"] == 3 and rows[1]["margin"] == pytest.approx(0.7 / (1 / 3))
    assert rows[2]["modalities"] == 2
    assert over_training(tmp_path / "absent") == []
