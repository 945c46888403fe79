"""``report.md`` + the tables and figures of a benchmark run, and an automatic, honest reading."""

from __future__ import annotations

from pathlib import Path

from mome.benchmark.presets import ABLATION_COMPONENTS, BenchmarkPreset
from mome.data.constants import MODALITIES

LABELS = {"mome": "MoME", "single": "nnU-Net (single)", "task-specific": "Task-specific nnU-Nets",
          "multitalent": "Multi-Talent", "hermes": "Hermes", "no-curriculum": "MoME w/o curriculum",
          "basic-gate": "MoME basic gate", "random-experts": "MoME random experts",
          "sam-med3d": "SAM-Med3D (10 clicks)", "sam-med3d-released": "SAM-Med3D, released training (10 clicks)"}
INTERACTIVE = ("sam-med3d", "sam-med3d-released")


def write_report(out: Path, bp: BenchmarkPreset, seed: int, chosen, results, skipped, collection, runs,
                 timings, log) -> dict:
    from mome.evaluation.tables import comparison_tables, tables_dict, tables_markdown

    foundation = {LABELS.get(n, n): results[n] for n in chosen if n in results and n not in bp.ablations}
    reference = [LABELS.get(n, n) for n in bp.reference if n in chosen]
    ablation_names = [n for n in ("mome", *bp.ablations) if n in results]
    ablations = {LABELS.get(n, n): results[n] for n in ablation_names} if len(ablation_names) > 1 else None
    components = None
    if ablations:
        components = {comp: {LABELS.get(n, n): ABLATION_COMPONENTS[n][comp] for n in ablation_names}
                      for comp in ABLATION_COMPONENTS["mome"]}
    tables = comparison_tables(foundation, ablations=ablations, reference_systems=reference, components=components,
                               confidence=True, seed=seed)
    figures = _figures(out / "figures", foundation, reference, chosen, collection, runs, log)
    reading = _reading(results, chosen, bp)
    md = [f"# mome benchmark ({bp.name})", "",
          f"Command: `mome benchmark --preset {bp.name} --out {out} --seed {seed}`. Synthetic data preset "
          f"`{bp.synth}` (seed {seed}), training preset `{bp.train}`"
          + (f" with overrides {bp.train_overrides}" if bp.train_overrides else "") + ".",
          "Data: mome's synthetic MNI152 benchmark (9 datasets, 17 tasks), not the paper's datasets: numbers "
          "are not comparable with the paper's, only the orderings between systems are.", "",
          f"Test images: {len(collection.filter(split='test'))}. Systems: "
          + ", ".join(LABELS.get(n, n) for n in chosen) + ".", ""]
    for name, ids in skipped.items():
        if ids:
            md.append(f"- {LABELS.get(name, name)} does not apply to {len(ids)} test image(s) (unseen datasets); "
                      "their cells show '-'.")
    interactive = {n: _click_summary(out / "predictions" / n) for n in chosen if n in INTERACTIVE and n in results}
    md += _interactive_lines(interactive)
    md += ["", tables_markdown(tables), "", "## Figures", ""]
    md += [f"![{k}](figures/{Path(v).name})" for k, v in figures.items() if v]
    md += ["", "## Reading", "", *[f"- {line}" for line in reading], "", "## Time per step (s)", "",
           "| step | seconds |", "|---|---|", *[f"| {k} | {v:.0f} |" for k, v in timings.items()]]
    from mome.benchmark.fidelity import check_claims, fidelity_markdown

    fidelity = check_claims(results, seed)
    (out / "fidelity.md").write_text(fidelity_markdown(
        fidelity, LABELS, f"The paper's claims in this run ({bp.name} preset, seed {seed}; synthetic data)"))
    md += ["", "## The paper's claims", "", "Each ordering of the paper's tables, tested on this run's test images "
           "(paired bootstrap + Wilcoxon): `fidelity.md`. Verdicts: " + ", ".join(
               f"{v} {sum(r['verdict'] == v for r in fidelity)}" for v in ("holds", "within noise", "reversed",
                                                                           "not shown")) + "."]
    (out / "report.md").write_text("\n".join(md) + "\n")
    summaries = {n: results[n].summary() for n in results}
    return {"tables": tables_dict(tables), "summaries": summaries, "reading": reading, "fidelity": fidelity,
            "figures": {k: str(v) for k, v in figures.items() if v},
            "skipped": {k: v for k, v in skipped.items() if v},
            "interactive": {k: v for k, v in interactive.items() if v}}


def _click_summary(pred_dir: Path) -> dict | None:
    from mome.benchmark.predict import click_summary

    return click_summary(pred_dir)


def _interactive_lines(interactive: dict) -> list[str]:
    """What the interactive systems' cells mean, and their Dice after each click."""
    lines = []
    for name, summary in interactive.items():
        if not summary:
            continue
        curve = summary["mean_dice_per_click"]
        lines += ["", f"- {LABELS.get(name, name)}: the SAM-Med3D architecture trained from scratch on this "
                      "benchmark's training images (no SAM-Med3D weights; the paper fine-tuned the pretrained "
                      "model). It is interactive, not automatic: each test image gets "
                      f"{summary['clicks']} clicks simulated from its reference mask ({summary['rule']} rule: each "
                      "click at the centre of the largest error region). Its cells are the Dice after the last "
                      "click (what a user has after the clicks; the best click is an oracle choice that needs the "
                      "reference), so they are not comparable with the automatic systems' as such.",
                  f"  Mean Dice after click 1, 5 and {len(curve)} over its {summary['images']} test images with a "
                  f"lesion: {curve[0]:.4f}, {curve[min(4, len(curve) - 1)]:.4f}, {curve[-1]:.4f}; best click "
                  f"{summary['mean_best_click_dice']:.4f} (best before the last click on "
                  f"{summary['images_best_before_last']} images)."]
    return lines


def _figures(folder: Path, foundation, reference, chosen, collection, runs: Path, log) -> dict:
    from mome.benchmark.analysis import bottleneck_features, expert_usage
    from mome.evaluation.figures import plot_expert_usage, plot_radar, plot_tsne, radar_scores
    from mome.weights.store import load_model

    folder.mkdir(parents=True, exist_ok=True)
    figs = {}
    radar_systems = {k: v for k, v in foundation.items() if k not in reference}
    if radar_systems:
        figs["radar"] = plot_radar(radar_scores(radar_systems), folder / "radar.png", overwrite=True)
    test = collection.filter(split="test").cases
    if "mome" in chosen and "single" in chosen:
        log("figures: t-SNE of bottleneck features (MoME gate vs single U-Net)")
        feats = {}
        for name, label in (("mome", "MoME gate"), ("single", "nnU-Net (single)")):
            f = bottleneck_features(load_model(runs / name / "final"), test)
            feats[label] = (f, [c.modality for c in test], [c.lesion_type for c in test])
        figs["tsne"] = folder / "tsne.png"
        plot_tsne(feats, figs["tsne"], overwrite=True)
    usage = {}
    for name, label in (("no-curriculum", "without curriculum"), ("mome", "with curriculum")):
        if name in chosen:
            model = load_model(runs / name / "final")
            usage[label] = expert_usage(model, test, list(MODALITIES))
            experts = model.config.modalities
    if usage:
        log("figures: gate-weighted expert output per input modality")
        figs["expert_usage"] = plot_expert_usage(usage, folder / "expert_usage.png", experts=experts,
                                                 overwrite=True)
    return figs


def _reading(results, chosen, bp) -> list[str]:
    """Plain statements of which of the paper's orderings hold in this run (computed, not written by hand)."""
    lines = []

    def lv(name, level, seen=True):
        return results[name].level("dice", level, seen) if name in results else None

    def cmp(a, b, level, seen=True, what=""):
        x, y = lv(a, level, seen), lv(b, level, seen)
        if x is None or y is None:
            return
        verdict = "holds" if x > y else "does not hold"
        lines.append(f"{what or level}: {LABELS.get(a, a)} {x:.4f} vs {LABELS.get(b, b)} {y:.4f} -> the paper's "
                     f"ordering ({LABELS.get(a, a)} > {LABELS.get(b, b)}) {verdict} here.")

    for other in ("single", "multitalent", "hermes", "sam-med3d"):
        for level in ("image", "task", "dataset"):
            cmp("mome", other, level, True, f"seen {level}-level Dice")
    for other in ("single", "hermes", "sam-med3d"):
        cmp("mome", other, "dataset", False, "unseen dataset-level Dice")
    chain = [n for n in ("mome", "no-curriculum", "basic-gate", "random-experts") if n in results]
    for a, b in zip(chain, chain[1:]):
        cmp(a, b, "task", True, "ablation, seen task-level Dice")
    if "task-specific" in results and "mome" in results:
        x, y = lv("mome", "task"), lv("task-specific", "task")
        if x is not None and y is not None:
            lines.append(f"MoME vs task-specific upper bound (seen task level): {x:.4f} vs {y:.4f} "
                         f"(difference {x - y:+.4f}; the paper reports -0.0073).")
    if not lines:
        lines.append("no paired comparison available in this run")
    return lines
