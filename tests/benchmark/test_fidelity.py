"""The paper's claims checked with paired tests (mome.benchmark.fidelity)."""

from __future__ import annotations

import numpy as np

from mome.benchmark.fidelity import Claim, check_claim, check_claims, combine_seeds, fidelity_markdown
from mome.evaluation.result import CaseRow, EvalResult


def _result(name, shift, seed=0, n=16):
    rng = np.random.default_rng(seed)
    rows = []
    for dataset, modality, seen in (("BraTS", "FLAIR", True), ("BraTS", "T1", True), ("ISLES", "DWI", True),
                                    ("Tumour1", "FLAIR", False)):
        base = 0.5 + 0.1 * rng.standard_normal(n)
        rows += [CaseRow(f"{dataset}_{i}_{modality}", dataset, modality, "tumour", seen,
                         {"dice": float(np.clip(v + shift, 0, 1))}) for i, v in enumerate(base)]
    return EvalResult(rows, name=name)


def test_holds_reversed_within_noise_and_equivalence():
    results = {"mome": _result("mome", 0.1), "single": _result("single", 0.0), "hermes": _result("hermes", 0.2),
               "task-specific": _result("task-specific", 0.1)}
    up = Claim("Table 1", "mome", "single", "seen:task", 0.70, 0.66)
    assert check_claim(up, results)["verdict"] == "holds"
    assert check_claim(Claim("Table 1", "mome", "hermes", "seen:task", 0.70, 0.67), results)["verdict"] == "reversed"
    # the paper's ordering the other way round (B above A) holds when ours is too
    assert check_claim(Claim("Table 2", "mome", "hermes", "dataset:Tumour1", 0.70, 0.71), results)["verdict"] == "holds"
    same = Claim("Table 1", "mome", "task-specific", "seen:task", 0.70, 0.71, equivalence=True)
    assert check_claim(same, results)["verdict"] == "holds"  # identical scores: the difference is 0
    assert check_claim(Claim("Table 1", "mome", "sam-med3d", "seen:task", 0.7, 0.5), results) is None  # absent
    noisy = {"mome": _result("mome", 0.0, seed=0), "single": _result("single", 0.0, seed=0)}
    noisy["single"].rows = [CaseRow(r.id, r.dataset, r.modality, r.lesion_type, r.seen,
                                    {"dice": r.metrics["dice"] + (0.01 if i % 2 else -0.01)})
                            for i, r in enumerate(noisy["single"].rows)]
    assert check_claim(up, noisy)["verdict"] == "within noise"


def test_all_claims_markdown_and_seeds():
    per_seed = {s: check_claims({"mome": _result("mome", 0.1, s), "single": _result("single", 0.0, s)}, s)
                for s in (0, 1, 2)}
    assert per_seed[0] and all(c["a"] == "mome" and c["b"] == "single" for c in per_seed[0])
    combined = combine_seeds(per_seed)
    assert len(combined) == len(per_seed[0]) and all(len(r["seeds"]) == 3 for r in combined)
    first = next(r for r in combined if r["claim"] == "Table 1: seen:task")
    assert first["verdict"] == "holds" and abs(first["difference_mean"] - 0.1) < 0.02
    md = fidelity_markdown(combined, {"mome": "MoME"}, "t")
    assert "| Table 1: seen:task | MoME | > single | +0.0372 |" in md and "(3 seeds)" in md
