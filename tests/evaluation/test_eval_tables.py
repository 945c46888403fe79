"""Paper-style comparison tables: layout, '-' for missing systems/tasks, bold best, JSON form."""

from __future__ import annotations

import json

import pytest

from evaluation_helpers import paper_result

from mome.errors import ConfigError
from mome.evaluation.tables import (
    comparison_tables,
    supplementary_table1,
    table1_seen,
    table2_unseen,
    table3_ablations,
    tables_dict,
    tables_markdown,
)


@pytest.fixture
def systems():
    return {"nnU-Net": paper_result("nnU-Net"),
            "Multi-Talent": paper_result("Multi-Talent", seen_only=True, scale=1.02),
            "MoME": paper_result("MoME", scale=1.05),
            "Task-specific": paper_result("Task-specific", scale=1.1)}


def _row(table, *labels):
    return next(r for r in table.rows if r.labels[:len(labels)] == list(labels))


def test_table1_levels_and_bold(systems):
    t = table1_seen(systems, reference_systems=["Task-specific"],
                    extra_rows={"GPU memory usage (GB)": {"nnU-Net": 7.5, "MoME": 38.2}})
    assert [r.labels[0] for r in t.rows] == ["Image-level", "Task-level", "Dataset-level", "GPU memory usage (GB)"]
    task = _row(t, "Task-level")
    assert task.values["nnU-Net"] == pytest.approx(0.66544, abs=1e-5)
    assert task.values["MoME"] == pytest.approx(1.05 * task.values["nnU-Net"])
    assert t.best(task) == ["MoME"]  # the reference system (x1.1) is better but never bold
    assert t.best(_row(t, "GPU memory usage (GB)")) == []
    md = t.to_markdown()
    assert "| Task-level | 0.6654 | 0.6788 | **0.6987** | 0.7320 |" in md
    assert "Task-specific (reference)" in md and "| GPU memory usage (GB) | 7.5000 | - | 38.2000 | - |" in md


def test_table2_shows_dash_for_a_system_without_unseen_predictions(systems):
    t = table2_unseen(systems, reference_systems=["Task-specific"])
    assert [r.labels[0] for r in t.rows] == ["Tumour1", "Tumour2", "WMHsMix"]
    tum1 = _row(t, "Tumour1")
    assert tum1.values["Multi-Talent"] is None and tum1.values["nnU-Net"] == pytest.approx(0.8358)
    assert "| Tumour1 | 0.8358 | - | **0.8776** | 0.9194 |" in t.to_markdown()


def test_missing_cases_turn_their_rows_into_dashes(systems):
    mome = systems["MoME"]
    gone = mome.rows.pop(0)  # BraTS2021/T1 left without a prediction
    mome.missing = [{"id": gone.id, "dataset": gone.dataset, "modality": gone.modality,
                     "lesion_type": gone.lesion_type, "seen": True}]
    t1 = table1_seen(systems)
    assert all(r.values["MoME"] is None for r in t1.rows)
    assert any("MoME: 1 cases had no prediction" in n for n in t1.notes)
    s = supplementary_table1(systems)
    assert _row(s, "Seen datasets", "BraTS2021", "T1").values["MoME"] is None
    assert _row(s, "Seen datasets", "BraTS2021", "T2").values["MoME"] == pytest.approx(0.8868 * 1.05)
    assert _row(s, "Lesion level", "Tumour").values["MoME"] is None
    assert _row(s, "Lesion level", "Stroke").values["MoME"] is not None


def test_supplementary_table1_layout(systems):
    s = supplementary_table1(systems, reference_systems=["Task-specific"])
    assert len(s.rows) == 17 + 3 + 5  # tasks, lesion groups, modalities
    assert _row(s, "Unseen datasets", "Tumour1").labels == ["Unseen datasets", "Tumour1", "FLAIR", "15"]
    tumour = _row(s, "Lesion level", "Tumour")
    assert tumour.labels[3] == "1,2,3,4,15,16"
    assert tumour.values["Multi-Talent"] is None  # lacks the unseen tumour tasks, as in the paper
    assert _row(s, "Lesion level", "Stroke").values["Multi-Talent"] == pytest.approx(1.02 * 0.655)
    assert _row(s, "Modality level", "T1ce").values["nnU-Net"] == pytest.approx((0.8816 + 0.4375) / 2)
    md = s.to_markdown()
    assert "| Lesion level | Tumour |  | 1,2,3,4,15,16 | 0.8585 | - | **0.9014** | 0.9444 |" in md
    assert "|  | Stroke |  | 5,10 | 0.6550 | 0.6681 | **0.6878** | 0.7205 |" in md


def test_table3_components_and_unseen_row(systems):
    abl = {"MoME": systems["MoME"], "no curriculum": systems["nnU-Net"], "seen only": systems["Multi-Talent"]}
    t = table3_ablations(abl, components={"Curriculum learning": {"MoME": True, "no curriculum": False}})
    comp = _row(t, "Component", "Curriculum learning")
    assert comp.values == {"MoME": "✓", "no curriculum": "✗", "seen only": None} and t.best(comp) == []
    unseen = _row(t, "Unseen datasets")
    assert unseen.values["no curriculum"] == pytest.approx((0.8358 + 0.7959 + 0.7032) / 3)
    assert unseen.values["seen only"] is None
    assert [r.labels for r in t.rows[1:4]] == [["Seen datasets", lv] for lv in
                                               ("Image-level", "Task-level", "Dataset-level")]


def test_lower_is_better_metric_and_dict(systems):
    t = table1_seen(systems, metric="hd95_mm")
    assert t.best(_row(t, "Image-level")) == ["Task-specific"]  # smallest distance wins
    tabs = comparison_tables(systems, ablations={"a": systems["MoME"]}, reference_systems=["Task-specific"])
    assert list(tabs) == ["table1", "table2", "table3", "supplementary_table1"]
    d = json.loads(json.dumps(tables_dict(tabs), allow_nan=False))
    assert d["table2"]["rows"][0]["values"]["Multi-Talent"] is None
    assert d["table1"]["rows"][1]["best"] == ["MoME"]
    md = tables_markdown(tabs)
    for title in ("Table 1", "Table 2", "Table 3", "Supplementary Table I"):
        assert f"**{title}" in md


def test_bad_arguments(systems):
    with pytest.raises(ConfigError, match="no systems"):
        table1_seen({})
    with pytest.raises(ConfigError, match="unknown metric"):
        table2_unseen(systems, metric="jaccard")
    with pytest.raises(ConfigError, match="reference systems"):
        supplementary_table1(systems, reference_systems=["SAM"])
