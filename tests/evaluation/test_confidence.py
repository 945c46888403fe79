"""Confidence intervals per table cell and paired tests per bolded row (mome.evaluation.confidence)."""

from __future__ import annotations

import numpy as np
import pytest

from mome.evaluation.confidence import CellSpec, interval, paired_test, verdict
from mome.evaluation.result import CaseRow, EvalResult
from mome.evaluation.tables import comparison_tables, table1_seen


def _result(name, scores: dict[str, list[float]]) -> EvalResult:
    rows = []
    for task, values in scores.items():
        dataset, modality = task.split("/")
        rows += [CaseRow(f"{dataset}_{i}_{modality}", dataset, modality, "tumour", True, {"dice": float(v)})
                 for i, v in enumerate(values)]
    return EvalResult(rows, name=name)


def _scores(seed, shift=0.0, n=12):
    rng = np.random.default_rng(seed)
    return {t: list(np.clip(base + shift + 0.1 * rng.standard_normal(n), 0, 1))
            for t, base in (("A/T1", 0.3), ("A/FLAIR", 0.7), ("B/FLAIR", 0.5))}


@pytest.mark.parametrize("kind", ["image", "task", "dataset"])
def test_interval_holds_the_value_and_narrows_with_more_images(kind):
    spec = CellSpec(("A/T1", "A/FLAIR", "B/FLAIR"), kind)
    few, many = _result("few", _scores(0, n=6)), _result("many", _scores(0, n=96))
    lo, hi = interval(few, spec)
    value = {"image": few.level("dice", "image"), "task": few.level("dice", "task"),
             "dataset": few.level("dice", "dataset")}[kind]
    assert lo < value < hi
    lo2, hi2 = interval(many, spec)
    assert (hi2 - lo2) < 0.6 * (hi - lo)  # 16x the images: about 1/4 the width (sampling noise: < 0.6)
    assert interval(few, spec) == (lo, hi)  # seeded: the same interval again


def test_a_task_with_one_image_is_held_fixed_and_constant_scores_give_a_point():
    one = _result("one", {"A/T1": [0.4], "B/T1": [0.2, 0.6, 0.5]})
    lo, hi = interval(one, CellSpec(("A/T1", "B/T1"), "task"))
    assert lo < (0.4 + np.mean([0.2, 0.6, 0.5])) / 2 < hi and hi - lo <= (0.6 - 0.2) / 2 + 1e-9
    flat = _result("flat", {"A/T1": [0.5, 0.5, 0.5]})
    assert interval(flat, CellSpec(("A/T1",), "task")) == (0.5, 0.5)


def test_paired_test_tells_a_shift_from_noise():
    spec = CellSpec(("A/T1", "A/FLAIR", "B/FLAIR"), "task")
    base = _scores(1, n=20)
    better = _result("better", {t: [min(1.0, v + 0.05) for v in vs] for t, vs in base.items()})
    same_a, same_b = _result("a", base), _result("b", _scores(1, n=20))
    shifted = paired_test(better, same_a, spec)
    assert shifted["difference"] > 0 and shifted["interval"][0] > 0 and verdict(shifted) == "significant"
    assert paired_test(same_a, same_b, spec)["p_wilcoxon"] == 1.0  # identical scores
    eps = 0.05 * np.abs(np.random.default_rng(7).standard_normal(10))
    symmetric = np.ravel(np.column_stack([eps, -eps]))  # differences of mean exactly 0 in every task
    noise = _result("noise", {t: list(np.asarray(vs) + symmetric) for t, vs in base.items()})
    test = paired_test(noise, same_a, spec)
    assert test["interval"][0] < 0 < test["interval"][1] and verdict(test) == "within noise"


def test_tables_carry_intervals_and_tests():
    results = {"MoME": _result("MoME", _scores(2, shift=0.1)), "Other": _result("Other", _scores(2))}
    tables = comparison_tables(results, confidence=True)
    row = tables["table1"].rows[1]
    assert set(row.intervals) == {"MoME", "Other"} and row.test["best"] == "MoME"
    md = tables["table1"].to_markdown()
    assert "**0." in md and "] |" in md and "MoME - Other = +0.1" in md and "significant" in md
    d = tables["table1"].to_dict()["rows"][0]
    assert d["intervals"]["MoME"][0] < d["values"]["MoME"] < d["intervals"]["MoME"][1]
    plain = table1_seen(results).to_markdown()
    assert "[" not in plain  # without confidence the table is as before
