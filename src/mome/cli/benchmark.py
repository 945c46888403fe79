"""``mome benchmark``: the whole paper pipeline on synthetic data."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("benchmark")(benchmark)


def benchmark(
    preset: str = typer.Option("quick", "--preset", help="quick (MoME + single U-Net, ~10 min on 2 cores), "
                               "cpu (every system, ~90 min), paper (GPU)"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder"),
    seed: int = typer.Option(0, "--seed", help="seed of the data and of every training run"),
    seeds: str = typer.Option(None, "--seeds",
                              help="several training seeds, e.g. 0,1,2: one run per seed in OUT/seed-<s> on one "
                                   "shared synthetic data set (first seed), then OUT/seeds.md (mean +- sd per "
                                   "cell) and OUT/fidelity.md (the paper's claims over the seeds)"),
    systems: str = typer.Option("", "--systems", help="comma-separated subset of systems (default: the preset's)"),
    device: str = typer.Option("auto", "--device", help="inference device: auto, cpu or cuda"),
    overwrite: bool = typer.Option(False, "--overwrite", help="start again in a folder that holds a benchmark"),
) -> None:
    """Synthesise the benchmark, train every system, predict, evaluate; write report.md and results.json."""
    from mome.benchmark import run_benchmark
    from mome.benchmark.runner import check_systems

    chosen = [s.strip() for s in systems.split(",") if s.strip()] or None
    if chosen:
        check_systems(chosen)
    if seeds is not None:
        from mome.benchmark.seeds import parse_seeds, run_seeds

        run_seeds(preset, out, parse_seeds(seeds), systems=chosen, overwrite=overwrite, device=device)
        typer.echo(f"across seeds: {out / 'seeds.md'}, {out / 'fidelity.md'}")
        return
    record = run_benchmark(preset, out, seed=seed, systems=chosen, overwrite=overwrite, device=device)
    typer.echo(f"report: {out / 'report.md'}")
    typer.echo(f"results: {out / 'results.json'}")
    for name, path in record.get("figures", {}).items():
        typer.echo(f"figure {name}: {path}")
