"""Fixtures of the evaluation tests."""

from __future__ import annotations

import pytest

from evaluation_helpers import row

from mome.evaluation.result import EvalResult


@pytest.fixture
def small_result() -> EvalResult:
    """Seen: D1/T1 Dice [1, .5, 0], D1/FLAIR [.9], D2/T1 [.2, .6]; unseen: U/FLAIR [.7]."""
    rows = [row(1, "D1", "T1", 1.0, empty="both"), row(2, "D1", "T1", 0.5), row(3, "D1", "T1", 0.0, empty="pred"),
            row(4, "D1", "FLAIR", 0.9), row(5, "D2", "T1", 0.2, lesion="stroke_acute"),
            row(6, "D2", "T1", 0.6, lesion="stroke_acute"), row(7, "U", "FLAIR", 0.7, seen=False, lesion="tumour")]
    return EvalResult(rows, name="sys")
