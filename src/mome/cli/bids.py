"""``mome bids BIDS_ROOT OUT_DIR participant|group``: a BIDS App over a cohort (mome.bids)."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

_HELP = (
    "Segment a BIDS dataset, one mask per subject (or session) from all its T1w, T2w, FLAIR and dwi images "
    "(BIDS App convention). 'participant' writes BIDS-Derivatives into OUT_DIR "
    "(sub-*/[ses-*/]anat/*_space-orig_desc-lesion_mask.nii.gz, *_label-lesion_probseg.nii.gz and a JSON "
    "sidecar with the statistics and QC); finished subjects are skipped on a rerun, --shard K/N splits the "
    "subjects over N jobs, --report adds an HTML page per subject. 'group' writes OUT_DIR/lesion_stats.tsv (one "
    "row per subject/session) and OUT_DIR/cohort.html."
)


class Level(str, Enum):
    participant = "participant"
    group = "group"


def register(app: typer.Typer) -> None:
    app.command("bids", help=_HELP)(bids)


def bids(
    bids_root: Path = typer.Argument(..., help="the raw BIDS dataset (with dataset_description.json)"),
    out_dir: Path = typer.Argument(..., help="the derivatives folder (e.g. BIDS_ROOT/derivatives/mome)"),
    level: Level = typer.Argument(..., help="participant or group"),
    participant_label: Optional[list[str]] = typer.Option(
        None, "--participant-label", help="subjects to run (with or without sub-; repeat the option or separate "
                                          "labels by commas or spaces); default all"),
    shard: str = typer.Option(None, "--shard", help="K/N: run the K-th of N disjoint shares of the subjects "
                                                    "(job arrays); the N shards together cover every subject"),
    model: str = typer.Option(None, "-m", "--model", help="registered model name or model folder"),
    fusion: str = typer.Option(None, "--fusion", help="several sequences: weighted (default), mean, max or learned"),
    preprocess: bool = typer.Option(False, "--preprocess",
                                    help="register each sequence to MNI152 and skull-strip first (raw scans); "
                                         "without it the sequences must be skull-stripped and co-registered"),
    registration: str = typer.Option("auto", "--registration", help="with --preprocess: auto, always or never"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda"),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32 or bf16"),
    backend: str = typer.Option(None, "--backend",
                                help="auto (default, or $MOME_BACKEND: OpenVINO on a CPU where it is installed, "
                                     "else PyTorch), torch or openvino"),
    tta: bool = typer.Option(False, "--tta", help="mirroring test-time augmentation (8 flips)"),
    report: bool = typer.Option(False, "--report",
                                help="participant level: also an HTML report per subject/session "
                                     "(OUT_DIR/sub-*.html, with a 3D viewer; works offline)"),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="replace derivatives made with other settings (or the group TSV)"),
) -> None:
    from mome.bids.app import run_group, run_participant
    from mome.data.registration import REGISTRATION_MODES
    from mome.errors import ConfigError

    if registration not in REGISTRATION_MODES:
        raise ConfigError(f"--registration {registration!r}; use one of {', '.join(REGISTRATION_MODES)}")
    def echo(line: str) -> None:  # warnings and per-subject errors to stderr, progress to stdout
        typer.echo(line, err=line.startswith("mome: "))

    if level is Level.group:
        if participant_label or shard or report:
            raise ConfigError("--participant-label, --shard and --report are for the participant level; the "
                              "group level reads every subject's outputs (and writes cohort.html)")
        run_group(bids_root, out_dir, overwrite=overwrite, echo=echo)
        return
    labels = [x for v in participant_label or [] for x in re.split(r"[,\s]+", v) if x]
    report = run_participant(bids_root, out_dir, participant_labels=labels or None, shard=shard, model=model,
                             fusion=fusion, preprocess=preprocess, registration=registration,
                             overwrite=overwrite, report=report, echo=echo, device=device, precision=precision, tta=tta,
                             backend=backend)
    typer.echo(f"{len(report.done)} segmented, {len(report.skipped)} already done, {len(report.empty)} without "
               f"images, {len(report.failed)} failed; outputs in {out_dir}")
    if report.failed:
        raise typer.Exit(1)
