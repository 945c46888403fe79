"""``mome evaluate``: score predicted masks against a collection; ``mome compare``: paper-style tables."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

_EVAL_HELP = (
    "Score a folder of predicted masks against a collection's labels: Dice, HD95 (mm), absolute volume "
    "difference (ml) and lesion-wise F1 per image, averaged at image, task (dataset x modality) and dataset "
    "level, per lesion group, lesion type and modality, seen vs unseen. Predictions are found as "
    "PRED/<case id>.nii.gz (or the case image's file name). Writes OUT/evaluation.json and "
    "OUT/evaluation.md. Empty masks: both empty = Dice 1, HD95 0; one empty = Dice 0, HD95 = image diagonal."
)
_COMPARE_HELP = (
    "Compare systems from their evaluation.json files: the paper's Table 1 (seen), Table 2 (unseen), "
    "Table 3 (ablations, with --ablation) and Supplementary Table I, plus the radar chart (Fig. 2a). "
    "The radar chart (seen tasks) leaves out --reference systems, as the paper compares foundation models. "
    "Writes OUT/tables.md, OUT/tables.json and OUT/radar.png."
)


def register(app: typer.Typer) -> None:
    app.command("evaluate", help=_EVAL_HELP)(evaluate)
    app.command("compare", help=_COMPARE_HELP)(compare)


def evaluate(
    pred: Path = typer.Option(..., "--pred", "-p", help="folder of predicted masks (.nii/.nii.gz)"),
    collection: Path = typer.Option(..., "--collection", "-c", help="collection manifest (or its folder)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="report folder (default: the --pred folder)"),
    split: str = typer.Option("test", "--split", help="test, train or all"),
    allow_missing: bool = typer.Option(False, "--allow-missing",
                                       help="evaluate the cases that have a prediction; list the others"),
    name: Optional[str] = typer.Option(None, "--name", help="system name (default: the --pred folder name)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing evaluation.json/.md"),
) -> None:
    from rich.console import Console

    from mome.evaluation.evaluate import EVAL_JSON, EVAL_MD, evaluate_predictions

    out = pred if out is None else out
    res = evaluate_predictions(pred, collection, split=split, out_dir=out, overwrite=overwrite,
                               allow_missing=allow_missing, name=name, progress=True)
    console = Console()
    console.print(summary_table(res))
    if res.missing:
        console.print(f"[yellow]warning:[/yellow] {len(res.missing)} cases had no prediction (listed in the "
                      "report)", highlight=False)
    console.print(f"wrote {out / EVAL_JSON} and {out / EVAL_MD}", soft_wrap=True, highlight=False)


def summary_table(res):
    """A rich table: Dice at image, task and dataset level and the other metrics, seen / unseen / all."""
    from rich.table import Table

    from mome.evaluation.result import METRICS

    table = Table(title=f"{res.name}: {len(res.rows)} images")
    for col in ("subset", "images", "Dice image", "Dice task", "Dice dataset", "HD95 mm", "AVD ml", "lesion F1"):
        table.add_column(col, justify="left" if col == "subset" else "right", no_wrap=col == "subset")
    for key, seen in (("seen", True), ("unseen", False), ("all", None)):
        n = sum(1 for r in res.rows if seen is None or r.seen == seen)
        if not n:
            continue
        vals = [res.level("dice", lv, seen) for lv in ("image", "task", "dataset")]
        vals += [res.level(m, "image", seen) for m in METRICS[1:]]
        table.add_row(key, str(n), *(f"{v:.4f}" if i < 3 or i == 5 else f"{v:.2f}" for i, v in enumerate(vals)))
    return table


def _named_paths(items: list[str], what: str) -> dict:
    from mome.errors import ConfigError
    from mome.evaluation.result import load_evaluation

    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(f"{what} {item!r} must look like NAME=PATH (PATH: evaluation.json or its folder)")
        if name.strip() in out:
            raise ConfigError(f"{what} name {name.strip()!r} is given twice")
        out[name.strip()] = load_evaluation(path.strip(), name=name.strip())
    return out


def compare(
    systems: list[str] = typer.Argument(..., help="NAME=PATH per system (PATH: evaluation.json or its folder)"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for tables.md, tables.json, radar.png"),
    reference: list[str] = typer.Option([], "--reference",
                                        help="system shown but not bolded (e.g. task-specific nnU-Nets)"),
    ablation: list[str] = typer.Option([], "--ablation", help="NAME=PATH per ablation system (Table 3)"),
    metric: str = typer.Option("dice", "--metric", help="dice, hd95_mm, avd_ml or lesion_f1"),
    confidence: bool = typer.Option(True, "--confidence/--no-confidence",
                                    help="95% bootstrap interval per cell and a paired test per bolded value"),
    seed: int = typer.Option(0, "--seed", help="seed of the bootstrap resampling"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace existing outputs"),
) -> None:
    import json

    from rich.console import Console

    from mome.errors import MomeError
    from mome.evaluation.figures import plot_radar, radar_scores
    from mome.evaluation.tables import comparison_tables, tables_dict, tables_markdown
    from mome.utils.atomic import check_writable, write_text_atomic
    from mome.utils.provenance import provenance

    paths = [check_writable(out / f, overwrite) for f in ("tables.md", "tables.json", "radar.png")]
    results = _named_paths(systems, "system")
    ablations = _named_paths(ablation, "ablation")
    tables = comparison_tables(results, ablations=ablations or None, metric=metric, reference_systems=reference,
                               confidence=confidence, seed=seed)
    payload = {"tables": tables_dict(tables), "systems": {k: r.config for k, r in results.items()},
               "ablations": {k: r.config for k, r in ablations.items()}, "metric": metric,
               "provenance": provenance(seed=seed)}
    console = Console()
    scores = {k: v for k, v in radar_scores(results, metric=metric).items() if k not in reference}
    write_text_atomic(paths[0], tables_markdown(tables), overwrite=overwrite)
    write_text_atomic(paths[1], json.dumps(payload, indent=2), overwrite=overwrite)
    try:
        plot_radar(scores, paths[2], overwrite=overwrite, title=f"{metric} per modality and lesion type (seen)")
        console.print(f"wrote {paths[0]}, {paths[1]} and {paths[2]}", soft_wrap=True, highlight=False)
    except MomeError as exc:  # e.g. fewer than 3 common axes on a tiny benchmark: tables still stand
        console.print(f"wrote {paths[0]} and {paths[1]}; no radar chart: {exc}", soft_wrap=True, highlight=False)
