"""Multi-system comparison tables laid out like the paper's Tables 1-3 and Supplementary Table I.

Input: ``{system name: EvalResult}``. A system that lacks some of the tasks a row averages over (no
predictions for them, e.g. Multi-Talent on unseen datasets, or cases left missing) shows ``-`` in that
row instead of a number averaged over a different set of images. Reference systems (e.g. task-specific
nnU-Nets, an upper bound) are listed but excluded when the best score of a row is put in bold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mome.errors import ConfigError
from mome.evaluation.confidence import CellSpec
from mome.evaluation.result import EvalResult, TaskInfo, group_order, order_tasks

METRIC_LABELS = {"dice": "Dice", "hd95_mm": "HD95 (mm)", "avd_ml": "AVD (ml)", "lesion_f1": "Lesion F1"}
LOWER_IS_BETTER = {"hd95_mm", "avd_ml"}
LEVEL_LABELS = {"image": "Image-level", "task": "Task-level", "dataset": "Dataset-level"}

Cell = float | str | None


@dataclass
class TableRow:
    """One row: its label cells and one value per system (float, a text cell, or None for "-").

    ``bold=False`` rows (e.g. GPU memory) never get a best value in bold. ``spec`` says which images the
    row aggregates and how (for its confidence intervals); ``intervals`` (system -> 95% interval) and
    ``test`` (the paired test of the bolded system against the runner-up) are filled by
    :func:`add_confidence`.
    """

    labels: list[str]
    values: dict[str, Cell]
    bold: bool = True
    spec: CellSpec | None = None
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    test: dict | None = None


@dataclass
class Table:
    """A comparison table, rendered with :meth:`to_markdown` or stored with :meth:`to_dict`."""

    title: str
    label_columns: list[str]
    systems: list[str]
    rows: list[TableRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reference_systems: list[str] = field(default_factory=list)
    higher_is_better: bool = True
    digits: int = 4

    def best(self, row: TableRow) -> list[str]:
        """Systems with the best numeric value of ``row`` among non-reference systems (ties: all)."""
        vals = {s: v for s, v in row.values.items()
                if s not in self.reference_systems and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if not row.bold or len(vals) < 2:
            return []
        target = max(vals.values()) if self.higher_is_better else min(vals.values())
        return [s for s, v in vals.items() if round(v, self.digits) == round(target, self.digits)]

    def _fmt(self, v: Cell) -> str:
        if v is None:
            return "-"
        return v if isinstance(v, str) else f"{v:.{self.digits}f}"

    def _interval(self, ci) -> str:
        return "" if ci is None else f" [{ci[0]:.{min(self.digits, 3)}f}, {ci[1]:.{min(self.digits, 3)}f}]"

    def to_markdown(self) -> str:
        """A GitHub-flavoured Markdown table with a title line and notes; best values in bold."""
        head = self.label_columns + [s + (" (reference)" if s in self.reference_systems else "")
                                     for s in self.systems]
        lines = [f"**{self.title}**", "", "| " + " | ".join(head) + " |",
                 "|" + "|".join(["---"] * len(self.label_columns) + ["---:"] * len(self.systems)) + "|"]
        prev: list[str] = []
        for row in self.rows:
            best = self.best(row)
            # blank a leading label repeated from the row above, as the paper's grouped rows
            labels = [("" if i < len(prev) and prev[:i + 1] == row.labels[:i + 1] else lab)
                      for i, lab in enumerate(row.labels)]
            prev = row.labels
            cells = [(f"**{self._fmt(row.values.get(s))}**" if s in best else self._fmt(row.values.get(s)))
                     + self._interval(row.intervals.get(s)) for s in self.systems]
            lines.append("| " + " | ".join(labels + cells) + " |")
        if self.notes:
            lines += [""] + [f"- {n}" for n in self.notes]
        tests = [(row, row.test) for row in self.rows if row.test]
        if tests:
            lines += ["", "Paired tests of each bolded value against the row's runner-up (same images):", ""]
            for row, t in tests:
                lines.append(f"- {' / '.join(x for x in row.labels if x)}: {t['best']} - {t['runner_up']} = "
                             f"{t['difference']:+.4f} [{t['interval'][0]:+.4f}, {t['interval'][1]:+.4f}], "
                             f"bootstrap p {_p(t)}, Wilcoxon p = {t['p_wilcoxon']:.3g} "
                             f"({t['images']} images): {t['verdict']}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return {"title": self.title, "label_columns": self.label_columns, "systems": self.systems,
                "reference_systems": self.reference_systems, "higher_is_better": self.higher_is_better,
                "rows": [{"labels": r.labels, "values": {s: r.values.get(s) for s in self.systems},
                          "best": self.best(r),
                          "intervals": {s: list(ci) for s, ci in r.intervals.items()} or None,
                          "test": r.test} for r in self.rows],
                "notes": self.notes}


# ---- helpers ---------------------------------------------------------------------------------------
def _p(test: dict) -> str:
    """The bootstrap p-value as text; 0 means no resample reached 0: ``< 1/N``."""
    if test["p_bootstrap"] == 0:
        return f"< {1 / test.get('resamples', 2000):.1g}"
    return f"= {test['p_bootstrap']:.3g}"


def _check(results: Mapping[str, EvalResult], reference_systems: Sequence[str], metric: str) -> None:
    if not results:
        raise ConfigError("no systems to compare: pass at least one evaluation result")
    if metric not in METRIC_LABELS:
        raise ConfigError(f"unknown metric {metric!r}; expected one of {', '.join(METRIC_LABELS)}")
    unknown = [s for s in reference_systems if s not in results]
    if unknown:
        raise ConfigError(f"reference systems {unknown} are not among the compared systems {list(results)}")


def union_tasks(results: Mapping[str, EvalResult], seen: bool | None = None) -> list[TaskInfo]:
    """Every task any system was evaluated on (or left missing), in table order, numbered by position."""
    infos: dict[str, TaskInfo] = {}
    for res in results.values():
        for t in res.tasks(seen):
            infos.setdefault(t.task, t)
    return order_tasks(infos.values())


def _complete(res: EvalResult, tasks: Sequence[str]) -> bool:
    have = {t.task for t in res.tasks()}
    return set(tasks) <= have and not (set(tasks) & res.missing_tasks())


def _mean_of_tasks(res: EvalResult, tasks: Sequence[str], metric: str) -> float | None:
    if not tasks or not _complete(res, tasks):
        return None
    tm = res.task_means(metric)
    return sum(tm[t] for t in tasks) / len(tasks)


def _notes(results: Mapping[str, EvalResult], metric: str, reference_systems: Sequence[str]) -> list[str]:
    notes = [f"{METRIC_LABELS[metric]} per image; task = dataset x modality; task-level = mean of task means; "
             "dataset-level = mean of dataset scores (a dataset's score = mean of its task means); "
             "'-' = the system has no predictions for some of the row's tasks."]
    if reference_systems:
        notes.append(f"Bold: best score per row excluding reference systems ({', '.join(reference_systems)}).")
    for name, res in results.items():
        if res.missing:
            notes.append(f"{name}: {len(res.missing)} cases had no prediction; rows using their tasks show '-'.")
    return notes


def _level_rows(results, metric: str, seen: bool, labels_prefix: list[str]) -> list[TableRow]:
    tasks = [t.task for t in union_tasks(results, seen)]
    rows = []
    for lv, lab in LEVEL_LABELS.items():
        vals = {s: (r.level(metric, lv, seen) if tasks and _complete(r, tasks) else None)
                for s, r in results.items()}
        rows.append(TableRow(labels_prefix + [lab], vals, spec=CellSpec(tuple(tasks), lv) if tasks else None))
    return rows


def _table(title, label_columns, results, metric, reference_systems) -> Table:
    return Table(title, label_columns, list(results), reference_systems=list(reference_systems),
                 higher_is_better=metric not in LOWER_IS_BETTER, digits=2 if metric in LOWER_IS_BETTER else 4,
                 notes=_notes(results, metric, reference_systems))


# ---- the paper's tables ----------------------------------------------------------------------------
def table1_seen(results: Mapping[str, EvalResult], *, metric: str = "dice",
                reference_systems: Sequence[str] = (),
                extra_rows: Mapping[str, Mapping[str, Cell]] | None = None) -> Table:
    """Table 1: image-, task- and dataset-level scores on seen datasets, one column per system.

    Args:
        extra_rows: more rows, never bolded, e.g. ``{"GPU memory usage (GB)": {"MoME": 38.2}}``.
    """
    _check(results, reference_systems, metric)
    t = _table(f"Table 1: average {METRIC_LABELS[metric]} on seen datasets", [METRIC_LABELS[metric]],
               results, metric, reference_systems)
    t.rows = _level_rows(results, metric, True, [])
    for label, vals in (extra_rows or {}).items():
        t.rows.append(TableRow([label], {s: vals.get(s) for s in results}, bold=False))
    return t


def table2_unseen(results: Mapping[str, EvalResult], *, metric: str = "dice",
                  reference_systems: Sequence[str] = ()) -> Table:
    """Table 2: one row per unseen dataset (its dataset-level score), one column per system."""
    _check(results, reference_systems, metric)
    t = _table(f"Table 2: average {METRIC_LABELS[metric]} on unseen datasets", ["Dataset"], results, metric,
               reference_systems)
    per: dict[str, list[str]] = {}
    for info in union_tasks(results, False):
        per.setdefault(info.dataset, []).append(info.task)
    for dataset, tasks in per.items():
        vals = {}
        for s, r in results.items():
            vals[s] = r.dataset_means(metric, False).get(dataset) if _complete(r, tasks) else None
        t.rows.append(TableRow([dataset], vals, spec=CellSpec(tuple(tasks), "dataset")))
    if not per:
        t.notes.append("No unseen datasets were evaluated.")
    return t


def table3_ablations(results: Mapping[str, EvalResult], *, metric: str = "dice",
                     components: Mapping[str, Mapping[str, bool]] | None = None,
                     reference_systems: Sequence[str] = ()) -> Table:
    """Table 3: ablations; seen image/task/dataset levels and the unseen datasets' mean.

    Args:
        results: one column per ablation system (e.g. full MoME, no curriculum, basic gating...).
        components: optional rows of check marks, e.g. ``{"Curriculum learning": {"MoME": True, ...}}``.
    """
    _check(results, reference_systems, metric)
    t = _table(f"Table 3: ablation studies ({METRIC_LABELS[metric]})", ["Datasets", "Level"], results, metric,
               reference_systems)
    for comp, flags in (components or {}).items():
        t.rows.append(TableRow(["Component", comp],
                               {s: ("✓" if flags[s] else "✗") if s in flags else None for s in results},
                               bold=False))
    t.rows += _level_rows(results, metric, True, ["Seen datasets"])
    unseen = [x.task for x in union_tasks(results, False)]
    t.rows.append(TableRow(["Unseen datasets", "Dataset-level"],
                           {s: (r.level(metric, "dataset", False) if unseen and _complete(r, unseen) else None)
                            for s, r in results.items()},
                           spec=CellSpec(tuple(unseen), "dataset") if unseen else None))
    return t


def supplementary_table1(results: Mapping[str, EvalResult], *, metric: str = "dice",
                         reference_systems: Sequence[str] = ()) -> Table:
    """Supplementary Table I: one row per task, then lesion-level and modality-level rows.

    Task ids number the union of tasks (seen first). A lesion group's or modality's score is the mean of
    its tasks' mean scores, pooling seen and unseen tasks as the paper does.
    """
    _check(results, reference_systems, metric)
    t = _table(f"Supplementary Table I: average {METRIC_LABELS[metric]} per task, lesion type and modality",
               ["Setting", "Dataset", "Modality", "Task ID"], results, metric, reference_systems)
    tasks = union_tasks(results)
    ids = {info.task: i + 1 for i, info in enumerate(tasks)}
    for info in tasks:
        vals = {s: r.task_means(metric).get(info.task) if _complete(r, [info.task]) else None
                for s, r in results.items()}
        setting = "Seen datasets" if info.seen else "Unseen datasets"
        t.rows.append(TableRow([setting, info.dataset, info.modality, str(ids[info.task])], vals,
                               spec=CellSpec((info.task,), "task")))
    for setting, by in (("Lesion level", "lesion_group"), ("Modality level", "modality")):
        per: dict[str, list[str]] = {}
        for info in tasks:
            per.setdefault(getattr(info, by), []).append(info.task)
        for g in group_order(by, per):
            vals = {s: _mean_of_tasks(r, per[g], metric) for s, r in results.items()}
            t.rows.append(TableRow([setting, g, "", ",".join(str(ids[x]) for x in per[g])], vals,
                                   spec=CellSpec(tuple(per[g]), "task")))
    return t


def comparison_tables(results: Mapping[str, EvalResult], *, ablations: Mapping[str, EvalResult] | None = None,
                      metric: str = "dice", reference_systems: Sequence[str] = (),
                      components: Mapping[str, Mapping[str, bool]] | None = None,
                      confidence: bool = False, seed: int = 0) -> dict[str, Table]:
    """All paper tables: ``table1``, ``table2``, ``supplementary_table1`` and, given ablations, ``table3``;
    with ``confidence`` every cell gets its 95% interval and every bolded row its paired test
    (:func:`add_confidence`)."""
    out = {"table1": table1_seen(results, metric=metric, reference_systems=reference_systems),
           "table2": table2_unseen(results, metric=metric, reference_systems=reference_systems)}
    if ablations:
        out["table3"] = table3_ablations(ablations, metric=metric, components=components)
    out["supplementary_table1"] = supplementary_table1(results, metric=metric,
                                                       reference_systems=reference_systems)
    if confidence:
        for name, table in out.items():
            add_confidence(table, ablations if name == "table3" else results, metric, seed=seed)
    return out


def add_confidence(table: Table, results: Mapping[str, EvalResult], metric: str = "dice", *,
                   seed: int = 0) -> Table:
    """Fill every numeric cell's 95% bootstrap interval and each bolded row's paired test
    (:mod:`mome.evaluation.confidence`); cells over non-finite scores keep no interval."""
    from mome.evaluation.confidence import interval, paired_test, verdict

    for row in table.rows:
        if row.spec is None:
            continue
        numeric = {s: v for s, v in row.values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and np.isfinite(v)}
        for s in numeric:
            ci = interval(results[s], row.spec, metric, seed=seed)
            if ci is not None:
                row.intervals[s] = ci
        best = table.best(row)
        others = {s: v for s, v in numeric.items() if s not in table.reference_systems and s not in best}
        if len(best) == 1 and others:
            runner = (max if table.higher_is_better else min)(others, key=others.get)
            test = paired_test(results[best[0]], results[runner], row.spec, metric, seed=seed)
            if test is not None:
                row.test = {"best": best[0], "runner_up": runner, **test, "verdict": verdict(test)}
    table.notes.append("[a, b]: 95% bootstrap interval (test images resampled within each task, 2,000 "
                       "resamples, seeded); a paired test is listed under the table for every bolded value.")
    return table


def tables_markdown(tables: Mapping[str, Table]) -> str:
    """The tables one after another as Markdown."""
    return "\n".join(t.to_markdown() for t in tables.values())


def tables_dict(tables: Mapping[str, Table]) -> dict:
    """The tables as a JSON-able dict keyed like ``tables``."""
    return {k: t.to_dict() for k, t in tables.items()}
