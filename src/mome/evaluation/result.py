"""Evaluation results and their averaging levels (the paper's image, task and dataset levels, groups).

Definitions (paper, Section 3.3 and Supplementary Table I; checked against its published numbers):

- **image level**: mean over images.
- **task level**: mean over tasks (task = dataset x modality) of each task's mean over its images.
- **dataset level**: mean over datasets of each dataset's score, where a dataset's score is the mean of
  its tasks' means (the paper's dataset-level values are reproduced by this rule, e.g. nnU-Net 0.6561).
- **lesion group / lesion type / modality**: the mean of the task means of the tasks in that group
  (a task's lesion type is the most common lesion type of its cases). The paper's Supplementary Table I
  groups pool seen and unseen tasks (e.g. Tumour includes the unseen tumour datasets); ``seen=None``
  gives that definition, ``seen=True`` restricts to seen tasks (Fig. 2a, "on seen datasets").
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mome.data.constants import LESION_GROUPS, MODALITIES
from mome.errors import ConfigError, DataError

METRICS = ("dice", "hd95_mm", "avd_ml", "lesion_f1")
LEVELS = ("image", "task", "dataset")
GROUPINGS = ("lesion_group", "lesion_type", "modality")

#: The averaging definitions, stored in every ``evaluation.json``.
DEFINITIONS = {
    "image": "mean over images",
    "task": "mean over tasks (dataset x modality) of each task's mean over its images",
    "dataset": "mean over datasets of each dataset's mean of its tasks' means",
    "groups": "lesion group / lesion type / modality score = mean of the task means of its tasks (a task's "
              "lesion type is its cases' most common one); 'all' pools seen and unseen tasks as the paper's "
              "Supplementary Table I, 'seen' restricts to seen tasks as Fig. 2a",
}


@dataclass
class CaseRow:
    """One evaluated image.

    Attributes:
        id, dataset, modality, lesion_type, seen: the case's fields (see :class:`mome.data.collection.Case`).
        metrics: metric name -> value (``dice``, ``hd95_mm``, ``avd_ml``, ``lesion_f1``).
        details: everything else recorded for the image (volumes in ml, lesion counts, empty flag, files).
    """

    id: str
    dataset: str
    modality: str
    lesion_type: str
    seen: bool
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    @property
    def task(self) -> str:
        return f"{self.dataset}/{self.modality}"


@dataclass(frozen=True)
class TaskInfo:
    """A task's identity: ``task`` = ``dataset/modality``, its lesion type and group, seen flag."""

    task: str
    dataset: str
    modality: str
    lesion_type: str
    lesion_group: str
    seen: bool


def _mean(values) -> float | None:
    vals = [float(v) for v in values]
    return float(np.mean(vals)) if vals else None


def order_tasks(infos) -> list[TaskInfo]:
    """Seen before unseen; datasets in first-appearance order; modalities in :data:`MODALITIES` order."""
    infos = list(infos)
    first = {}
    for t in infos:
        first.setdefault(t.dataset, len(first))
    mod_rank = {m: i for i, m in enumerate(MODALITIES)}
    return sorted(infos, key=lambda t: (not t.seen, first[t.dataset], mod_rank.get(t.modality, 99), t.modality))


@dataclass
class EvalResult:
    """Per-image metrics of one system on one collection, with every averaging level as methods.

    Attributes:
        rows: one :class:`CaseRow` per evaluated image.
        missing: cases without a prediction (only when evaluation allowed it), as dicts with ``id``,
            ``dataset``, ``modality``, ``lesion_type``, ``seen``.
        name: system name.
        config: how the evaluation was run (folders, split...).
        conventions: the empty-mask and matching conventions the metrics follow.
        provenance: versions, time.
    """

    rows: list[CaseRow]
    missing: list[dict] = field(default_factory=list)
    name: str = ""
    config: dict = field(default_factory=dict)
    conventions: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    # ---- selection -------------------------------------------------------------------------------
    def _check_metric(self, metric: str) -> None:
        if not self.rows:
            raise DataError("the evaluation result has no evaluated images")
        if any(metric not in r.metrics for r in self.rows):
            have = sorted(set().union(*(r.metrics for r in self.rows)))
            raise ConfigError(f"metric {metric!r} is not in this result; available: {', '.join(have)}")

    def _rows(self, seen: bool | None) -> list[CaseRow]:
        return [r for r in self.rows if seen is None or r.seen == seen]

    def tasks(self, seen: bool | None = None) -> list[TaskInfo]:
        """Evaluated tasks in table order (seen first, then unseen)."""
        by_task: dict[str, list[CaseRow]] = {}
        for r in self._rows(seen):
            by_task.setdefault(r.task, []).append(r)
        infos = []
        for task, rows in by_task.items():
            lt = sorted(Counter(r.lesion_type for r in rows).items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
            infos.append(TaskInfo(task, rows[0].dataset, rows[0].modality, lt, LESION_GROUPS.get(lt, lt),
                                  all(r.seen for r in rows)))
        return order_tasks(infos)

    def missing_tasks(self) -> set[str]:
        """Tasks with at least one case left without a prediction."""
        return {f"{m['dataset']}/{m['modality']}" for m in self.missing}

    # ---- averaging levels ------------------------------------------------------------------------
    def task_means(self, metric: str = "dice", seen: bool | None = None) -> dict[str, float]:
        """Task -> mean over its images."""
        self._check_metric(metric)
        out: dict[str, list[float]] = {}
        for r in self._rows(seen):
            out.setdefault(r.task, []).append(r.metrics[metric])
        order = [t.task for t in self.tasks(seen)]
        return {t: _mean(out[t]) for t in order}

    def dataset_means(self, metric: str = "dice", seen: bool | None = None) -> dict[str, float]:
        """Dataset -> mean of its tasks' means."""
        tm = self.task_means(metric, seen)
        per: dict[str, list[float]] = {}
        for t in self.tasks(seen):
            per.setdefault(t.dataset, []).append(tm[t.task])
        return {d: _mean(v) for d, v in per.items()}

    def level(self, metric: str = "dice", level: str = "image", seen: bool | None = None) -> float | None:
        """The mean at ``level`` (``image``, ``task`` or ``dataset``) over seen, unseen or all (None) cases.

        Returns None when no case falls in the selection.
        """
        self._check_metric(metric)
        if level == "image":
            return _mean(r.metrics[metric] for r in self._rows(seen))
        if level == "task":
            return _mean(self.task_means(metric, seen).values())
        if level == "dataset":
            return _mean(self.dataset_means(metric, seen).values())
        raise ConfigError(f"unknown averaging level {level!r}; expected one of {', '.join(LEVELS)}")

    def group_means(self, metric: str = "dice", by: str = "lesion_group",
                    seen: bool | None = None) -> dict[str, dict]:
        """Group -> ``{"mean": mean of its tasks' means, "tasks": [task, ...]}``.

        Args:
            by: ``lesion_group`` (Tumour / WMH / Stroke), ``lesion_type`` or ``modality``.
            seen: None pools seen and unseen tasks (Supplementary Table I); True/False restricts.
        """
        if by not in GROUPINGS:
            raise ConfigError(f"unknown grouping {by!r}; expected one of {', '.join(GROUPINGS)}")
        tm = self.task_means(metric, seen)
        per: dict[str, list[str]] = {}
        for t in self.tasks(seen):
            per.setdefault(getattr(t, by), []).append(t.task)
        order = group_order(by, per)
        return {g: {"mean": _mean(tm[t] for t in per[g]), "tasks": per[g]} for g in order}

    def empty_counts(self) -> dict[str, int]:
        """How many images had both masks empty, only the prediction empty, only the reference empty."""
        c = Counter(r.details.get("empty", "none") for r in self.rows)
        return {"both": c["both"], "pred_only": c["pred"], "ref_only": c["ref"]}

    def summary(self, metrics=METRICS) -> dict:
        """Every aggregate as a JSON-able dict: ``{metric: {"levels", "tasks", "datasets", groups...}}``."""
        out = {}
        have = set.intersection(*(set(r.metrics) for r in self.rows)) if self.rows else set()
        for m in (m for m in metrics if m in have):
            levels = {}
            for key, seen in (("seen", True), ("unseen", False), ("all", None)):
                rows = self._rows(seen)
                levels[key] = {lv: self.level(m, lv, seen) for lv in LEVELS}
                levels[key].update(n_images=len(rows), n_tasks=len({r.task for r in rows}),
                                   n_datasets=len({r.dataset for r in rows}))
            out[m] = {
                "levels": levels,
                "tasks": self.task_means(m),
                "datasets": self.dataset_means(m),
                **{by: {"all": self.group_means(m, by, None), "seen": self.group_means(m, by, True)}
                   for by in GROUPINGS},
            }
        return out

    # ---- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "definitions": DEFINITIONS,
            "conventions": self.conventions,
            "config": self.config,
            "empty_counts": self.empty_counts(),
            "missing": self.missing,
            "aggregates": self.summary(),
            "tasks": [asdict(t) for t in self.tasks()],
            "cases": [asdict(r) for r in self.rows],
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "EvalResult":
        try:
            rows = [CaseRow(**r) for r in d["cases"]]
        except (KeyError, TypeError) as exc:
            raise DataError(f"not an evaluation result (bad 'cases' entry: {exc})") from exc
        return cls(rows, list(d.get("missing", [])), str(d.get("name", "")), dict(d.get("config", {})),
                   dict(d.get("conventions", {})), dict(d.get("provenance", {})))

    def to_json(self) -> str:
        return json.dumps(_finite(self.to_dict()), indent=2)


def load_evaluation(path: str | os.PathLike, name: str | None = None) -> EvalResult:
    """Read an ``evaluation.json`` (or the folder holding one); ``name`` overrides the stored system name."""
    path = Path(path)
    if path.is_dir():
        path = path / "evaluation.json"
    if not path.is_file():
        raise DataError(f"evaluation result {path} does not exist; run `mome evaluate` first")
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"evaluation result {path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("cases"), list):
        raise DataError(f"{path} is not an evaluation result (no 'cases' list)")
    res = EvalResult.from_dict(raw)
    if name is not None:
        res.name = name
    return res


def group_order(by: str, per) -> list[str]:
    """Keys of ``per`` in display order: modalities as MODALITIES, groups as LESION_GROUPS, others sorted."""
    if by == "modality":
        ref = list(MODALITIES)
    elif by == "lesion_group":
        ref = list(dict.fromkeys(LESION_GROUPS.values()))
    else:
        ref = list(LESION_GROUPS)
    return sorted(per, key=lambda g: (ref.index(g) if g in ref else len(ref), g))


def _finite(obj):
    """Replace NaN/inf by None so the JSON is strict (no NaN literals)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
