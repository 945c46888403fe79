"""The paper's claims, each checked against a benchmark run with a paired test: holds, within noise, reversed.

Every claim is an ordering the paper reports between two systems at one averaging level (Tables 1-3; Fig. 2a's
perspectives are Supplementary Table I's lesion and modality rows): "A scores above B". Per run the claim is
tested on the test images both systems segmented (:func:`mome.evaluation.confidence.paired_test`: the
difference of the aggregate, its 95% bootstrap interval, bootstrap and Wilcoxon p-values):

* **holds**: the interval excludes 0 on the paper's side and both p-values are below 0.05;
* **reversed**: the interval excludes 0 on the other side (both p-values below 0.05);
* **within noise**: anything else.

Two claims are equivalences, not orderings ("MoME is comparable to task-specific nnU-Nets"): they hold when
the difference's interval lies within +-:data:`EQUIVALENCE_MARGIN` Dice. Across several seeds
(:func:`combine_seeds`) a claim holds (or is reversed) when it does in every seed; otherwise the seeds'
verdicts are counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mome.evaluation.confidence import CellSpec, paired_test

EQUIVALENCE_MARGIN = 0.02
ALPHA = 0.05
LEVELS = ("image", "task", "dataset")


@dataclass(frozen=True)
class Claim:
    """``a`` vs ``b`` (benchmark system names) on ``rows``: seen levels, an unseen dataset, or a group."""

    source: str  # where the paper reports it
    a: str
    b: str
    where: str  # "seen:<level>", "unseen:<level>", "dataset:<name>", "lesion:<group>", "modality:<name>"
    paper_a: float | None
    paper_b: float | None
    equivalence: bool = False

    @property
    def label(self) -> str:
        return f"{self.source}: {self.where}"


_T1 = {"image": {"single": 0.8007, "sam-med3d": 0.7322, "multitalent": 0.7948, "hermes": 0.8017, "mome": 0.8204,
                 "task-specific": 0.8202},
       "task": {"single": 0.6654, "sam-med3d": 0.5249, "multitalent": 0.6825, "hermes": 0.6720, "mome": 0.7026,
                "task-specific": 0.7099},
       "dataset": {"single": 0.6561, "sam-med3d": 0.5083, "multitalent": 0.6681, "hermes": 0.6603, "mome": 0.6938,
                   "task-specific": 0.6950}}
_T2 = {"Tumour1": {"single": 0.8358, "sam-med3d": 0.8339, "hermes": 0.8446, "mome": 0.8545, "task-specific": 0.8518},
       "Tumour2": {"single": 0.7959, "sam-med3d": 0.8146, "hermes": 0.7968, "mome": 0.8293, "task-specific": 0.8157},
       "WMHsMix": {"single": 0.7032, "sam-med3d": 0.5479, "hermes": 0.6968, "mome": 0.7015, "task-specific": 0.7508}}
_T3 = {"image": [0.8204, 0.8142, 0.8117, 0.8027], "task": [0.7026, 0.6969, 0.6878, 0.6529],
       "dataset": [0.6938, 0.6852, 0.6777, 0.6488], "unseen": [0.7951, 0.7889, 0.7912, 0.7814]}
_ABLATION_CHAIN = ("mome", "no-curriculum", "basic-gate", "random-experts")


def paper_claims() -> list[Claim]:
    """Every ordering of Tables 1-3 between MoME and another system (and the ablation chain)."""
    claims = []
    for level, row in _T1.items():
        for other in ("single", "sam-med3d", "multitalent", "hermes"):
            claims.append(Claim("Table 1", "mome", other, f"seen:{level}", row["mome"], row[other]))
        claims.append(Claim("Table 1", "mome", "task-specific", f"seen:{level}", row["mome"], row["task-specific"],
                            equivalence=True))
    for dataset, row in _T2.items():
        for other in ("single", "sam-med3d", "hermes", "task-specific"):
            claims.append(Claim("Table 2", "mome", other, f"dataset:{dataset}", row["mome"], row[other]))
    for level, values in _T3.items():
        where = "unseen:dataset" if level == "unseen" else f"seen:{level}"
        for (a, b), (va, vb) in zip(zip(_ABLATION_CHAIN, _ABLATION_CHAIN[1:]), zip(values, values[1:])):
            claims.append(Claim("Table 3", a, b, where, va, vb))
    # Fig. 2a: MoME above the other foundation models on the radar's perspectives (no per-axis numbers printed)
    for where in ("lesion:Tumour", "lesion:WMH", "lesion:Stroke", "modality:T1", "modality:T2", "modality:T1ce",
                  "modality:FLAIR", "modality:DWI"):
        for other in ("single", "multitalent", "hermes"):
            claims.append(Claim("Fig. 2a", "mome", other, where, None, None))
    return claims


def _spec(result, where: str) -> CellSpec | None:
    kind, _, name = where.partition(":")
    if kind in ("seen", "unseen"):
        tasks = [t.task for t in result.tasks(kind == "seen")]
        return CellSpec(tuple(tasks), name) if tasks else None
    if kind == "dataset":
        tasks = [t.task for t in result.tasks() if t.dataset == name]
        return CellSpec(tuple(tasks), "dataset") if tasks else None
    attr = "lesion_group" if kind == "lesion" else "modality"
    tasks = [t.task for t in result.tasks() if getattr(t, attr) == name]
    return CellSpec(tuple(tasks), "task") if tasks else None


def check_claim(claim: Claim, results: dict, seed: int = 0) -> dict | None:
    """The claim tested on one run's results (``{system: EvalResult}``); None when a system is missing."""
    if claim.a not in results or claim.b not in results:
        return None
    a, b = results[claim.a], results[claim.b]
    spec = _spec(a, claim.where)
    if spec is None or not set(spec.tasks) <= {t.task for t in b.tasks()}:
        return None
    test = paired_test(a, b, spec, seed=seed)
    if test is None:
        return None
    lo, hi = test["interval"]
    significant = test["p_bootstrap"] < ALPHA and test["p_wilcoxon"] < ALPHA
    if claim.equivalence:
        verdict = "holds" if -EQUIVALENCE_MARGIN <= lo and hi <= EQUIVALENCE_MARGIN else "not shown"
    else:
        sign = 1.0 if claim.paper_a is None or claim.paper_a >= claim.paper_b else -1.0
        if significant and sign * lo > 0 and sign * hi > 0:
            verdict = "holds"
        elif significant and sign * lo < 0 and sign * hi < 0:
            verdict = "reversed"
        else:
            verdict = "within noise"
    return {"claim": claim.label, "a": claim.a, "b": claim.b, "paper_a": claim.paper_a, "paper_b": claim.paper_b,
            "equivalence": claim.equivalence, **test, "verdict": verdict}


def check_claims(results: dict, seed: int = 0) -> list[dict]:
    return [r for c in paper_claims() if (r := check_claim(c, results, seed)) is not None]


def combine_seeds(per_seed: dict[int, list[dict]]) -> list[dict]:
    """One row per claim over seeds: mean and sd of the difference, and the verdict (unanimous or counted)."""
    rows: dict[tuple, list[dict]] = {}
    for seed, checks in sorted(per_seed.items()):
        for c in checks:
            rows.setdefault((c["claim"], c["a"], c["b"]), []).append({**c, "seed": seed})
    out = []
    for (claim, a, b), checks in rows.items():
        diffs = [c["difference"] for c in checks]
        verdicts = [c["verdict"] for c in checks]
        verdict = verdicts[0] if len(set(verdicts)) == 1 else ", ".join(
            f"{v} in {verdicts.count(v)}" for v in dict.fromkeys(verdicts))
        out.append({"claim": claim, "a": a, "b": b, "paper_a": checks[0]["paper_a"], "paper_b": checks[0]["paper_b"],
                    "equivalence": checks[0]["equivalence"],
                    "seeds": [c["seed"] for c in checks], "difference_mean": float(np.mean(diffs)),
                    "difference_sd": float(np.std(diffs, ddof=1)) if len(diffs) > 1 else None,
                    "per_seed": checks, "verdict": verdict})
    return out


def _p(p: float, resamples: int | None) -> str:
    return f"<{1 / (resamples or 2000):.0e}" if p == 0 else f"{p:.2g}"


def fidelity_markdown(rows: list[dict], labels: dict, title: str) -> str:
    """The claims as a Markdown table (one seed: difference and interval; several: mean +- sd)."""
    several = bool(rows) and "per_seed" in rows[0]
    lines = [f"# {title}", "",
             "Each row is an ordering the paper reports (A above or below B; `~` = comparable, an equivalence within "
             f"+-{EQUIVALENCE_MARGIN} Dice). Ours: Dice of A minus B on the same synthetic test images, "
             "" + ("mean +- sd over the seeds, " if several else "") + "95% bootstrap interval (images "
             "resampled within tasks), bootstrap and Wilcoxon p; holds / reversed = the interval excludes 0 on "
             "the paper's / the other side with both p < 0.05.", "",
             "| claim | A | B | paper A - B | ours A - B | verdict |", "|---|---|---|---:|---|---|"]
    for r in rows:
        paper = "" if r["paper_a"] is None else f"{r['paper_a'] - r['paper_b']:+.4f}"
        if several:
            sd = "" if r["difference_sd"] is None else f" +- {r['difference_sd']:.4f}"
            ours = f"{r['difference_mean']:+.4f}{sd} ({len(r['seeds'])} seeds)"
        else:
            ours = (f"{r['difference']:+.4f} [{r['interval'][0]:+.4f}, {r['interval'][1]:+.4f}], "
                    f"p {_p(r['p_bootstrap'], r.get('resamples'))} / {r['p_wilcoxon']:.2g}")
        rel = "~" if r["equivalence"] else (">" if r["paper_a"] is None or r["paper_a"] >= r["paper_b"] else "<")
        lines.append(f"| {r['claim']} | {labels.get(r['a'], r['a'])} | {rel} {labels.get(r['b'], r['b'])} | "
                     f"{paper} | {ours} | {r['verdict']} |")
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("holds", "within noise", "reversed", "not shown")}
    lines += ["", "Verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
              + (f", mixed over seeds {len(rows) - sum(counts.values())}" if len(rows) > sum(counts.values()) else "")
              + "."]
    return "\n".join(lines) + "\n"
