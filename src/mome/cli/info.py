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

    console = Console()
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
    if versions:
        from mome.utils.provenance import versions as _versions

        for k, v in _versions().items():
            console.print(f"{k}: {v}")
