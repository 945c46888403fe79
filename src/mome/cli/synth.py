"""``mome synth``: generate the synthetic multi-modality brain-lesion benchmark."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer


class SynthPresetName(str, Enum):
    tiny = "tiny"
    quick = "quick"
    cpu = "cpu"
    paper = "paper"


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)


def synth(
    preset: SynthPresetName = typer.Option(..., "--preset", "-p", help="size: tiny (tests, 6 mm), quick (4 mm, "
                                           "few subjects), cpu (2 mm), paper (1 mm, 160x196x160)"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder (must not exist unless --overwrite)"),
    seed: int = typer.Option(0, "--seed", help="master seed; same seed and preset give identical files"),
    lesion_masks: Optional[list[str]] = typer.Option(
        None, "--lesion-masks", help="draw real lesion shapes from a folder of binary MNI-space masks, as "
        "KIND=DIR with KIND stroke or ms (a bare DIR whose name contains 'stroke' or 'ms' also works); "
        "repeatable"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output folder"),
) -> None:
    """Generate the synthetic benchmark: 9 datasets, 17 tasks (dataset x modality), 5 modalities."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mome.cli.collection import counts_table
    from mome.data.synth import generate_benchmark, make_synth_config
    from mome.utils.atomic import check_writable

    console = Console(stderr=True)
    check_writable(out, overwrite)  # fail before any work
    cfg = make_synth_config(preset.value)
    start = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(f"synth {preset.value} ({cfg.n_images()} images)", total=None)

        def progress(done: int, total: int, subject: str) -> None:
            bar.update(task, completed=done, total=total, description=f"synth {preset.value}: {subject}")

        collection = generate_benchmark(preset.value, out, seed=seed, lesion_masks=lesion_masks,
                                        overwrite=overwrite, progress=progress)
    elapsed = time.perf_counter() - start
    stdout = Console()
    stdout.print(counts_table(collection))
    stdout.print(f"wrote {out}/collection.json ({len(collection)} cases) with images/, labels/, contrast.csv, "
                 f"contrast.md and montage.png in {elapsed:.1f} s", soft_wrap=True, highlight=False)
