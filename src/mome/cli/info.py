"""``mome info``: registered models, their parameter counts, and the installed versions."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("info")(info)


def info(versions: bool = typer.Option(False, "--versions", help="also print package versions")) -> None:
    """List registered model presets with parameter counts (and pretrained weights when present)."""
    from rich.console import Console
    from rich.table import Table

    from mome.model import build_model, count_parameters, list_presets

    console = Console(width=max(Console().width, 140))
    table = Table(title="mome model presets")
    for col in ("name", "experts", "stages x features", "expert params", "gate params", "total params",
                "description"):
        table.add_column(col)
    for preset in list_presets():
        cfg = preset.make_config()
        model = build_model(cfg)
        expert = count_parameters(model.experts[0])
        gate = count_parameters(model.gate)
        feats = cfg.expert.features_per_stage
        table.add_row(preset.name, ", ".join(cfg.modalities), f"{len(feats)} x {feats[0]}..{feats[-1]}",
                      f"{expert:,}", f"{gate:,}", f"{count_parameters(model):,}", preset.description)
    console.print(table)
    from mome.weights.registry import list_pretrained

    pre = Table(title="pretrained models (mome predict --model NAME)")
    for col in ("name", "default", "weights present", "licence", "description"):
        pre.add_column(col)
    for m in list_pretrained():
        pre.add_row(m.name, "yes" if m.default else "", "yes" if m.is_available() else "no", m.licence,
                    m.description)
    console.print(pre)
    if versions:
        from mome.utils.provenance import versions as _versions

        for k, v in _versions().items():
            console.print(f"{k}: {v}")
