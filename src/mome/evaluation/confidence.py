"""Confidence for the comparison tables: a 95% bootstrap interval per cell, a paired test per bolded row.

Every table cell is one *aggregate* of per-image scores over a set of tasks:

* ``image``: the mean over all the tasks' images;
* ``task``: the mean of the task means;
* ``dataset``: the mean over datasets of the mean of their tasks' means.

The interval resamples the test images *within each task* (a stratified bootstrap: each task keeps its number
of images, so the averaging level's weights stay those of the table) and recomputes the aggregate:
``scipy.stats.bootstrap`` with one sample per task, percentile method, seeded. The paired test compares the
row's best system with the runner-up on the same images: the bootstrap distribution of the aggregate of their
per-image differences (two-sided p: twice the smaller tail beyond 0), and the Wilcoxon signed-rank test of
the per-image differences (``scipy.stats.wilcoxon``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mome.errors import ConfigError

KINDS = ("image", "task", "dataset")
CONFIDENCE = 0.95
N_RESAMPLES = 2000


@dataclass(frozen=True)
class CellSpec:
    """What a cell aggregates: its tasks (``dataset/modality``) and the averaging kind."""

    tasks: tuple[str, ...]
    kind: str

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"unknown averaging kind {self.kind!r}; expected one of {', '.join(KINDS)}")


def _aggregator(spec: CellSpec):
    """A function of the per-task samples (in ``spec.tasks`` order) that computes the cell's aggregate."""
    datasets = [t.split("/")[0] for t in spec.tasks]
    groups = [[i for i, d in enumerate(datasets) if d == ds] for ds in dict.fromkeys(datasets)]

    def aggregate(*samples, axis=-1):
        if spec.kind == "image":
            return np.concatenate(samples, axis=axis).mean(axis=axis)
        means = [np.mean(s, axis=axis) for s in samples]
        if spec.kind == "task":
            return np.mean(means, axis=0)
        return np.mean([np.mean([means[i] for i in g], axis=0) for g in groups], axis=0)

    return aggregate


def _samples(result, spec: CellSpec, metric: str, ids: dict[str, set] | None = None) -> list[np.ndarray]:
    per = {t: [] for t in spec.tasks}
    for row in result.rows:
        if row.task in per and (ids is None or row.id in ids[row.task]):
            per[row.task].append(float(row.metrics[metric]))
    missing = [t for t, v in per.items() if not v]
    if missing:
        raise ConfigError(f"no evaluated images for {missing} in {result.name or 'the result'}")
    return [np.asarray(v) for v in per.values()]


def _bootstrap(samples: list[np.ndarray], spec: CellSpec, n_resamples: int, seed: int):
    """(low, high, bootstrap distribution) of the cell's aggregate. scipy resamples every sample of two or
    more images; a task with one image is held fixed (resampling one value always gives it back)."""
    from scipy.stats import bootstrap

    agg = _aggregator(spec)
    moving = [i for i, s in enumerate(samples) if len(s) > 1]
    if not moving:
        value = float(agg(*samples))
        return value, value, np.full(1, value)

    def statistic(*resampled, axis=-1):
        full = list(samples)
        batch = resampled[0].shape[:-1]
        for i, s in enumerate(samples):
            full[i] = np.broadcast_to(s, (*batch, len(s)))
        for i, r in zip(moving, resampled):
            full[i] = r
        return agg(*full, axis=axis)

    res = bootstrap(tuple(samples[i] for i in moving), statistic, n_resamples=n_resamples,
                    confidence_level=CONFIDENCE, method="percentile", vectorized=True,
                    random_state=np.random.default_rng(seed))
    return (float(res.confidence_interval.low), float(res.confidence_interval.high),
            np.asarray(res.bootstrap_distribution))


def interval(result, spec: CellSpec, metric: str = "dice", *, n_resamples: int = N_RESAMPLES,
             seed: int = 0) -> tuple[float, float] | None:
    """The 95% percentile-bootstrap interval of the cell (images resampled within tasks); None when a score
    is not finite (e.g. HD95 of an empty mask)."""
    samples = _samples(result, spec, metric)
    if not all(np.isfinite(s).all() for s in samples):
        return None
    if all(np.ptp(s) == 0 for s in samples):
        value = float(_aggregator(spec)(*samples))  # nothing varies: the interval is the value
        return value, value
    low, high, _ = _bootstrap(samples, spec, n_resamples, seed)
    return low, high


def paired_test(result_a, result_b, spec: CellSpec, metric: str = "dice", *, n_resamples: int = N_RESAMPLES,
                seed: int = 0) -> dict | None:
    """A minus B on the images both were evaluated on: the aggregate difference, its 95% interval, the
    bootstrap p-value and the Wilcoxon signed-rank p-value of the per-image differences."""
    from scipy.stats import wilcoxon

    common = {}
    for t in spec.tasks:
        a = {r.id for r in result_a.rows if r.task == t}
        b = {r.id for r in result_b.rows if r.task == t}
        common[t] = a & b
    if not all(common.values()):
        raise ConfigError(f"{result_a.name} and {result_b.name} share no evaluated image in some of {spec.tasks}")
    diffs = []  # the rows of both results are matched by image id (their file order may differ)
    for t in spec.tasks:
        va = {r.id: float(r.metrics[metric]) for r in result_a.rows if r.task == t and r.id in common[t]}
        vb = {r.id: float(r.metrics[metric]) for r in result_b.rows if r.task == t and r.id in common[t]}
        diffs.append(np.asarray([va[i] - vb[i] for i in sorted(common[t])]))
    agg = _aggregator(spec)
    difference = float(agg(*diffs))
    flat = np.concatenate(diffs)
    if not np.isfinite(flat).all():
        return None
    if all(np.ptp(d) == 0 for d in diffs):  # nothing varies: the difference is what it is
        low = high = difference
        dist = np.full(1, difference)
    else:
        low, high, dist = _bootstrap(diffs, spec, n_resamples, seed)
    # two-sided: twice the smaller share of resampled differences on either side of 0 (0 = below 1/N)
    p_boot = float(min(1.0, 2.0 * min(np.mean(dist <= 0), np.mean(dist >= 0))))
    p_wil = float(wilcoxon(flat, zero_method="wilcox").pvalue) if np.count_nonzero(flat) else 1.0
    return {"difference": difference, "interval": [low, high], "p_bootstrap": p_boot, "p_wilcoxon": p_wil,
            "images": int(flat.size), "resamples": n_resamples}


def verdict(test: dict, alpha: float = 0.05) -> str:
    """``significant`` when the difference's interval excludes 0 and both p-values are below ``alpha``."""
    lo, hi = test["interval"]
    clear = (lo > 0 or hi < 0) and test["p_bootstrap"] < alpha and test["p_wilcoxon"] < alpha
    return "significant" if clear else "within noise"
