"""The paper's figures: radar chart (Fig. 2a), t-SNE of bottleneck features (Fig. 2b) and the
gate-weighted expert output per input modality (Supplementary Fig. I). PNGs are written atomically.

matplotlib (Agg backend, no display needed) and scikit-learn are imported inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mome.data.constants import LESION_GROUPS, MODALITIES
from mome.errors import ConfigError, InputError
from mome.evaluation.result import EvalResult
from mome.utils.atomic import atomic_path, check_writable

DPI = 150


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _target(path: str | os.PathLike, overwrite: bool) -> Path:
    """Check the output before any drawing: a ``.png`` name, not existing unless ``overwrite``."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"figure path {path} must end in .png")
    return check_writable(path, overwrite)


def _save(fig, path: str | os.PathLike, overwrite: bool) -> Path:
    plt = _plt()
    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


# ---- Fig. 2a: radar chart -------------------------------------------------------------------------
def radar_scores(results: Mapping[str, EvalResult], *, metric: str = "dice",
                 seen: bool | None = True) -> dict[str, dict[str, float]]:
    """Per system, the score of every modality and lesion group (mean of its tasks' means).

    Axes are the modalities and lesion groups present in every system (Fig. 2a: 5 modalities + 3 lesion
    types on seen datasets, hence ``seen=True`` by default).
    """
    per = {}
    for name, res in results.items():
        mods = {k: v["mean"] for k, v in res.group_means(metric, "modality", seen).items()}
        groups = {k: v["mean"] for k, v in res.group_means(metric, "lesion_group", seen).items()}
        per[name] = {**mods, **groups}
    common = set.intersection(*(set(v) for v in per.values())) if per else set()
    order = [m for m in MODALITIES if m in common] + \
            [g for g in dict.fromkeys(LESION_GROUPS.values()) if g in common and g not in MODALITIES]
    return {name: {axis: vals[axis] for axis in order} for name, vals in per.items()}


def plot_radar(scores: Mapping[str, Mapping[str, float]], path: str | os.PathLike, *,
               title: str = "Dice per modality and lesion type", overwrite: bool = False) -> Path:
    """Radar chart: one closed curve per system over the same axes (e.g. from :func:`radar_scores`).

    Args:
        scores: ``{system: {axis label: value}}``; every system needs the same axes, >= 3 of them.
        path: PNG to write.
    """
    _target(path, overwrite)
    if not scores:
        raise InputError("radar chart: no systems to draw")
    axes = list(next(iter(scores.values())))
    if len(axes) < 3 or any(list(v) != axes for v in scores.values()):
        raise InputError(f"radar chart needs the same >= 3 axes for every system, got "
                         f"{ {k: list(v) for k, v in scores.items()} }")
    plt = _plt()
    angles = np.linspace(0, 2 * np.pi, len(axes), endpoint=False)
    closed = np.concatenate([angles, angles[:1]])
    allv = np.array([[s[a] for a in axes] for s in scores.values()], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 6), subplot_kw={"projection": "polar"})
    for name, s in scores.items():
        vals = np.array([s[a] for a in axes] + [s[axes[0]]], dtype=float)
        ax.plot(closed, vals, marker="o", linewidth=1.5, label=name)
        ax.fill(closed, vals, alpha=0.08)
    ax.set_xticks(angles)
    ax.set_xticklabels(axes)
    if np.nanmin(allv) >= 0 and np.nanmax(allv) <= 1:  # scores in [0, 1]: zoom on the used range
        ax.set_ylim(np.floor(max(0.0, np.nanmin(allv) - 0.05) * 10) / 10, 1.0)
    ax.set_title(title)
    ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.1), fontsize=8)
    return _save(fig, path, overwrite)


# ---- Fig. 2b: t-SNE ---------------------------------------------------------------------------------
def tsne_embed(features: np.ndarray, *, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE (scikit-learn) of ``features`` [n, d]; perplexity is clamped below n/3 for small n."""
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 4:
        raise InputError(f"t-SNE needs a [n, d] feature array with n >= 4, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise InputError("t-SNE features contain NaN or infinite values")
    perp = float(min(perplexity, max(1.0, (x.shape[0] - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed)
    if x.shape[0] >= 5000:
        return tsne.fit_transform(x)
    # Below a few thousand points one thread takes well under a second, while OpenMP threads on a busy
    # machine spin-wait (measured here: 8 s instead of 0.2 s for 24 points on 2 shared cores).
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        return tsne.fit_transform(x)


def cluster_separation(features: np.ndarray, labels: Sequence[str]) -> float | None:
    """Silhouette score (scikit-learn, -1..1) of ``labels`` in the feature space; None if undefined.

    A number for the paper's qualitative claim that MoME's gate clusters modalities and lesion types
    more clearly than a single U-Net's bottleneck.
    """
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels)
    if len(set(labels.tolist())) < 2 or len(set(labels.tolist())) >= len(labels):
        return None
    return float(silhouette_score(np.asarray(features, dtype=np.float64), labels))


def plot_tsne(features: Mapping[str, tuple[np.ndarray, Sequence[str], Sequence[str]]],
              path: str | os.PathLike, *, seed: int = 0, perplexity: float = 30.0,
              overwrite: bool = False) -> dict[str, dict]:
    """t-SNE panels side by side, one column per feature source, coloured by modality and by lesion type.

    Args:
        features: ``{name: (features [n, d], modality per row, lesion type per row)}``, e.g.
            ``{"MoME gate": ..., "nnU-Net": ...}`` (bottleneck features, one vector per image).
        path: PNG to write.
        seed: t-SNE random state.

    Returns:
        ``{name: {"embedding": [n, 2] array, "silhouette_modality": s, "silhouette_lesion": s}}``
        (silhouettes on the original features).
    """
    _target(path, overwrite)
    if not features:
        raise InputError("t-SNE: no feature sets given")
    out = {}
    for name, (x, mods, lesions) in features.items():
        x = np.asarray(x)
        if len(mods) != len(x) or len(lesions) != len(x):
            raise InputError(f"t-SNE {name!r}: {len(x)} feature rows but {len(mods)} modality and "
                             f"{len(lesions)} lesion labels")
        out[name] = {"embedding": tsne_embed(x, seed=seed, perplexity=perplexity),
                     "silhouette_modality": cluster_separation(x, mods),
                     "silhouette_lesion": cluster_separation(x, lesions)}
    plt = _plt()
    fig, axes = plt.subplots(2, len(features), figsize=(4.5 * len(features), 8.5), squeeze=False)
    for col, (name, (_, mods, lesions)) in enumerate(features.items()):
        emb = out[name]["embedding"]
        for row, (labels, what) in enumerate(((mods, "modality"), (lesions, "lesion type"))):
            ax = axes[row, col]
            labels = np.asarray(labels)
            for i, lab in enumerate(dict.fromkeys(labels.tolist())):
                sel = labels == lab
                ax.scatter(emb[sel, 0], emb[sel, 1], s=12, color=plt.cm.tab10(i % 10), label=str(lab))
            sil = out[name][f"silhouette_{'modality' if row == 0 else 'lesion'}"]
            ax.set_title(f"{name}: by {what}" + (f" (silhouette {sil:.2f})" if sil is not None else ""),
                         fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.legend(fontsize=7, markerscale=1.2, loc="best")
    _save(fig, path, overwrite)
    return out


# ---- Supplementary Fig. I: gate-weighted expert output ---------------------------------------------
def plot_expert_usage(conditions: Mapping[str, np.ndarray], path: str | os.PathLike, *,
                      input_modalities: Sequence[str] = MODALITIES, experts: Sequence[str] = MODALITIES,
                      overwrite: bool = False,
                      title: str = "Gate-weighted expert output per input modality") -> Path:
    """Heat maps side by side, one per condition (e.g. without / with curriculum).

    Args:
        conditions: ``{condition: matrix [input modality, expert]}`` of the mean gate-weighted expert
            output (same shape for every condition; drawn on one shared colour scale).
        input_modalities: row labels.
        experts: column labels (the expert of each modality).
        path: PNG to write.
    """
    _target(path, overwrite)
    if not conditions:
        raise InputError("expert usage figure: no conditions given")
    mats = {k: np.asarray(v, dtype=float) for k, v in conditions.items()}
    shape = (len(input_modalities), len(experts))
    bad = {k: m.shape for k, m in mats.items() if m.shape != shape}
    if bad:
        raise InputError(f"expert usage matrices must be [input modality x expert] = {shape}, got {bad}")
    if not all(np.all(np.isfinite(m)) for m in mats.values()):
        raise InputError("expert usage matrices contain NaN or infinite values")
    plt = _plt()
    lo = min(float(m.min()) for m in mats.values())
    hi = max(float(m.max()) for m in mats.values())
    if hi == lo:
        hi = lo + 1.0
    fig, axes = plt.subplots(1, len(mats), figsize=(4.6 * len(mats) + 1, 4.6), squeeze=False,
                             layout="constrained")
    im = None
    for k, (ax, (cond, m)) in enumerate(zip(axes[0], mats.items())):
        im = ax.imshow(m, cmap="viridis", vmin=lo, vmax=hi)
        ax.set_xticks(range(len(experts)), [f"{e} expert" for e in experts], rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(input_modalities)), input_modalities, fontsize=8)
        ax.set_xlabel("expert")
        if k == 0:
            ax.set_ylabel("input modality")
        ax.set_title(cond, fontsize=10)
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v < lo + 0.5 * (hi - lo) else "black")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    fig.suptitle(title)
    return _save(fig, path, overwrite)

