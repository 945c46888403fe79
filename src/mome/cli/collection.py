"""``mome collection``: import nnU-Net datasets, folders or CSV tables as collections, and check them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

LABEL_RULE_HELP = ("label values that are lesion, as integers or dataset.json label names separated by commas "
                   "(default: every value > 0, except nnU-Net's 'ignore' label); labels are reduced to 0/1 "
                   "files written next to the manifest")

collection_app = typer.Typer(help="Build and check collections (JSON manifests of single-channel cases).",
                             no_args_is_help=True)
import_app = typer.Typer(help="Import a dataset as a collection manifest (images referenced in place).",
                         no_args_is_help=True)
collection_app.add_typer(import_app, name="import")


def register(app: typer.Typer) -> None:
    app.add_typer(collection_app, name="collection")


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    from mome.errors import DataError

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise DataError(f"{what} {item!r} must look like KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _report(result) -> None:
    from rich.console import Console

    console = Console()
    console.print(counts_table(result.collection))
    console.print(f"wrote {result.manifest} ({len(result.collection)} cases"
                  + (f", {result.labels_written} reduced labels in {result.labels_dir}" if result.labels_dir else "")
                  + ")", soft_wrap=True, highlight=False)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}", soft_wrap=True, highlight=False)


def counts_table(collection):
    """A rich table: cases per dataset x modality, split into train / test, with seen flags."""
    from rich.table import Table

    counts = collection.counts()
    seen = {}
    for c in collection.cases:
        seen.setdefault(c.dataset, set()).add(c.seen)
    table = Table(title=f"collection {collection.name!r}: {len(collection)} cases, {len(collection.tasks())} tasks")
    for col in ("dataset", "modality", "seen", "train", "test", "total"):
        table.add_column(col, justify="right" if col in ("train", "test", "total") else "left")
    keys = sorted({(d, m) for d, m, _ in counts})
    for d, m in keys:
        tr, te = counts.get((d, m, "train"), 0), counts.get((d, m, "test"), 0)
        flag = "/".join(sorted("seen" if s else "unseen" for s in seen[d]))
        table.add_row(d, m, flag, str(tr), str(te), str(tr + te))
    tr = sum(n for (_, _, s), n in counts.items() if s == "train")
    te = sum(n for (_, _, s), n in counts.items() if s == "test")
    table.add_row("all", ", ".join(collection.modalities()), "", str(tr), str(te), str(tr + te), style="bold")
    return table


@import_app.command("nnunet")
def import_nnunet_cmd(
    src: Path = typer.Argument(..., help="nnU-Net raw dataset folder (dataset.json, imagesTr/, labelsTr/...)"),
    out: Path = typer.Option(..., "--out", "-o", help="manifest to write, e.g. collection.json"),
    dataset: str = typer.Option(..., "--dataset", help="dataset name (a task is dataset x modality)"),
    lesion_type: str = typer.Option(..., "--lesion-type", help="tumour, wmh, ms, stroke_acute, stroke_chronic, none"),
    seen: bool = typer.Option(True, "--seen/--unseen", help="unseen = held out from training"),
    split: Optional[str] = typer.Option(None, "--split", help="force every case to train or test "
                                        "(default: imagesTr -> train, imagesTs -> test)"),
    lesion_labels: Optional[str] = typer.Option(None, "--lesion-labels", help=LABEL_RULE_HELP),
    modality_labels: Optional[list[str]] = typer.Option(
        None, "--modality-labels", help="per-modality lesion labels, e.g. T1ce=1,3 (repeatable)"),
    channel: Optional[list[str]] = typer.Option(
        None, "--channel", help="override a channel's modality, or skip it: 3=FLAIR, 2=skip (repeatable)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing manifest"),
) -> None:
    """Import an nnU-Net raw dataset: every channel becomes one case sharing the case's label."""
    from mome.data.nnunet_import import import_nnunet
    from mome.errors import DataError

    chans = {}
    for k, v in _pairs(channel, "--channel").items():
        try:
            chans[int(k)] = v
        except ValueError:
            raise DataError(f"--channel {k}={v}: the channel index must be an integer") from None
    _report(import_nnunet(src, out, dataset=dataset, lesion_type=lesion_type, seen=seen, split=split,
                          lesion_labels=lesion_labels, modality_labels=_pairs(modality_labels, "--modality-labels"),
                          channels=chans, overwrite=overwrite))


@import_app.command("folder")
def import_folder_cmd(
    src: Path = typer.Argument(..., help="folder of SUBJECT/<modality>.nii.gz + SUBJECT/label.nii.gz"),
    out: Path = typer.Option(..., "--out", "-o", help="manifest to write, e.g. collection.json"),
    dataset: str = typer.Option(..., "--dataset", help="dataset name"),
    lesion_type: str = typer.Option(..., "--lesion-type", help="tumour, wmh, ms, stroke_acute, stroke_chronic, none"),
    seen: bool = typer.Option(True, "--seen/--unseen", help="unseen = held out from training"),
    split: str = typer.Option("train", "--split", help="train or test"),
    label_name: str = typer.Option("label", "--label-name", help="label file name without .nii.gz"),
    ignore: Optional[list[str]] = typer.Option(None, "--ignore", help="file name to skip, e.g. adc (repeatable)"),
    lesion_labels: Optional[str] = typer.Option(None, "--lesion-labels", help="label values that are lesion, "
                                                "e.g. 1,2 (default every value > 0)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing manifest"),
) -> None:
    """Import subject folders holding one NIfTI per modality (t1, t1ce, t2, flair, dwi) and a label."""
    from mome.data.folder_import import import_folder

    _report(import_folder(src, out, dataset=dataset, lesion_type=lesion_type, seen=seen, split=split,
                          label_name=label_name, ignore=ignore or (), lesion_labels=lesion_labels,
                          overwrite=overwrite))


@import_app.command("csv")
def import_csv_cmd(
    table: Path = typer.Argument(..., help="CSV with columns image,label,modality[,id,subject,dataset,"
                                 "lesion_type,split,seen]"),
    out: Path = typer.Option(..., "--out", "-o", help="manifest to write, e.g. collection.json"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="dataset for rows without one"),
    lesion_type: Optional[str] = typer.Option(None, "--lesion-type", help="lesion type for rows without one"),
    seen: bool = typer.Option(True, "--seen/--unseen", help="for rows without a seen cell"),
    split: str = typer.Option("train", "--split", help="for rows without a split cell"),
    lesion_labels: Optional[str] = typer.Option(None, "--lesion-labels", help="label values that are lesion"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing manifest"),
) -> None:
    """Import the cases listed in a CSV table."""
    from mome.data.folder_import import import_csv

    _report(import_csv(table, out, dataset=dataset, lesion_type=lesion_type, seen=seen, split=split,
                       lesion_labels=lesion_labels, overwrite=overwrite))


@collection_app.command("check")
def check_cmd(
    manifest: Path = typer.Argument(..., help="collection.json (or its folder)"),
    headers_only: bool = typer.Option(False, "--headers-only", help="skip reading voxels (faster; does "
                                      "not check that labels are 0/1 and images finite, complete and not constant)"),
) -> None:
    """Validate a collection's files (existence, geometry, binary labels) and print case counts."""
    from rich.console import Console
    from rich.progress import track

    from mome.data.collection import load_collection
    from mome.data.validate import find_problems, problems_error

    coll = load_collection(manifest)
    err = Console(stderr=True)
    problems = find_problems(coll, check_label_values=not headers_only,
                             progress=lambda cases: track(cases, description="checking", console=err,
                                                          transient=True))
    if problems:  # the report on stdout; stderr gets the one error line
        report = Console()
        for p in problems[:50]:
            report.print(f"[red]{p}[/red]", highlight=False, soft_wrap=True)
        if len(problems) > 50:
            report.print(f"... and {len(problems) - 50} more")
        raise problems_error(f"collection {coll.name!r} is invalid", problems)
    console = Console()
    console.print(counts_table(coll))
    console.print(f"{manifest}: {len(coll)} cases OK", soft_wrap=True, highlight=False)


@collection_app.command("visible")
def visible_cmd(
    manifest: Path = typer.Argument(..., help="collection.json (or its folder)"),
    out: Path = typer.Option(..., "--out", "-o", help="manifest to write (images stay where they are)"),
    min_cnr: float = typer.Option(1.0, "--min-cnr", help="drop training cases whose lesion contrast-to-noise "
                                  "ratio (lesion vs the brain within ~4 mm) is smaller in magnitude"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing manifest"),
) -> None:
    """Keep only training cases whose labelled lesion the image shows (test cases are kept as they are)."""
    from collections import Counter

    from rich.console import Console
    from rich.progress import track

    from mome.data.collection import load_collection
    from mome.data.visibility import visible_collection
    from mome.utils.atomic import check_writable

    coll = load_collection(manifest)
    check_writable(out, overwrite=overwrite, kind="file")
    err = Console(stderr=True)
    result = visible_collection(coll, min_cnr, progress=lambda cases: track(
        cases, description="measuring lesion CNR", console=err, transient=True))
    result.collection.save(out, overwrite=overwrite)
    tasks = {c.id: c.task for c in coll.cases}
    dropped = Counter(tasks[i] for i in result.dropped)
    train = Counter(c.task for c in coll.cases if c.split == "train")
    console = Console()
    for task in sorted(dropped):
        console.print(f"{task}: dropped {dropped[task]} of {train[task]} training cases", highlight=False)
    console.print(f"wrote {out} ({len(result.collection)} of {len(coll)} cases; |CNR| >= {min_cnr:g} "
                  "for every labelled training lesion)", soft_wrap=True, highlight=False)
