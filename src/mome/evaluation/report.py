"""Markdown report of one system's evaluation (``evaluation.md``)."""

from __future__ import annotations

from mome.evaluation.metrics import LESION_CONNECTIVITY
from mome.evaluation.result import GROUPINGS, METRICS, EvalResult

_HEAD = {"dice": "Dice", "hd95_mm": "HD95 (mm)", "avd_ml": "AVD (ml)", "lesion_f1": "Lesion F1"}
_DIGITS = {"dice": 4, "hd95_mm": 2, "avd_ml": 3, "lesion_f1": 4}
_GROUP_TITLE = {"lesion_group": "Per lesion group", "lesion_type": "Per lesion type", "modality": "Per modality"}


def _f(v, metric: str | None = None) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{_DIGITS.get(metric, 4)}f}"
    return str(v)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"] + \
           ["| " + " | ".join(r) + " |" for r in rows] + [""]


def evaluation_markdown(result: EvalResult, worst: int = 10) -> str:
    """Summary, per-task, per-dataset and per-group tables, conventions and the lowest-Dice images.

    Args:
        result: the evaluation.
        worst: how many lowest-Dice images to list.
    """
    metrics = [m for m in METRICS if result.rows and all(m in r.metrics for r in result.rows)]
    cfg = result.config
    out = [f"# Evaluation: {result.name}", ""]
    if cfg:
        out += [f"- predictions: `{cfg.get('pred_dir', '?')}`", f"- collection: `{cfg.get('collection', '?')}`",
                f"- split: {cfg.get('split', '?')}"]
    out += [f"- evaluated images: {len(result.rows)}; cases without prediction: {len(result.missing)}", ""]

    out += ["## Summary", ""]
    head = ["Selection", "Images", "Tasks", "Datasets"] + [f"Dice ({lv}-level)" for lv in ("image", "task", "dataset")]
    head += [f"{_HEAD[m]} (image-level)" for m in metrics if m != "dice"]
    rows = []
    for key, seen in (("seen", True), ("unseen", False), ("all", None)):
        sel = [r for r in result.rows if seen is None or r.seen == seen]
        if not sel:
            continue
        row = [key, str(len(sel)), str(len({r.task for r in sel})), str(len({r.dataset for r in sel}))]
        row += [_f(result.level("dice", lv, seen), "dice") for lv in ("image", "task", "dataset")]
        row += [_f(result.level(m, "image", seen), m) for m in metrics if m != "dice"]
        rows.append(row)
    out += _table(head, rows)

    out += ["## Per task (mean over images)", ""]
    means = {m: result.task_means(m) for m in metrics}
    counts = {}
    for r in result.rows:
        counts[r.task] = counts.get(r.task, 0) + 1
    rows = [[str(i + 1), t.dataset, t.modality, "seen" if t.seen else "unseen", t.lesion_type, str(counts[t.task])]
            + [_f(means[m][t.task], m) for m in metrics] for i, t in enumerate(result.tasks())]
    out += _table(["Task ID", "Dataset", "Modality", "Seen", "Lesion type", "Images"]
                  + [_HEAD[m] for m in metrics], rows)

    out += ["## Per dataset (mean of task means)", ""]
    dmeans = {m: result.dataset_means(m) for m in metrics}
    out += _table(["Dataset"] + [_HEAD[m] for m in metrics],
                  [[d] + [_f(dmeans[m][d], m) for m in metrics] for d in dmeans["dice"]])

    for by in GROUPINGS:
        out += [f"## {_GROUP_TITLE[by]} (mean of task means; 'all' pools seen and unseen tasks)", ""]
        g_all = {m: result.group_means(m, by, None) for m in metrics}
        g_seen = result.group_means("dice", by, True)
        rows = [[g, ", ".join(v["tasks"]), _f(g_seen.get(g, {}).get("mean"), "dice")]
                + [_f(g_all[m][g]["mean"], m) for m in metrics] for g, v in g_all["dice"].items()]
        out += _table([by.replace("_", " ").capitalize(), "Tasks", "Dice (seen tasks)"]
                      + [f"{_HEAD[m]} (all)" for m in metrics], rows)

    ec = result.empty_counts()
    out += ["## Conventions", "",
            f"- Both masks empty: Dice 1, HD95 0 mm, AVD 0 ml, lesion F1 1 ({ec['both']} images).",
            "- Exactly one mask empty: Dice 0, lesion F1 0, HD95 = the image diagonal in mm (BraTS-style cap) "
            f"({ec['pred_only']} images with an empty prediction, {ec['ref_only']} with an empty reference).",
            "- HD95: max of the two directed 95th percentiles of surface distances (mm, voxel spacing honoured).",
            f"- Lesions: {LESION_CONNECTIVITY}-connected components; a reference lesion is detected when any "
            "predicted voxel overlaps it; a predicted lesion overlapping no reference voxel is a false positive.",
            ""]
    if result.rows and "dice" in metrics:
        low = sorted(result.rows, key=lambda r: r.metrics["dice"])[:worst]
        out += [f"## Lowest Dice ({len(low)} images)", ""]
        out += _table(["Case", "Task"] + [_HEAD[m] for m in metrics] + ["Empty"],
                      [[r.id, r.task] + [_f(r.metrics[m], m) for m in metrics] + [r.details.get("empty", "")]
                       for r in low])
    if result.missing:
        out += ["## Cases without prediction", "", ", ".join(m["id"] for m in result.missing), ""]
    return "\n".join(out)
