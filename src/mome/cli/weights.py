"""``mome weights``: download the authors' official MoME checkpoints and convert them (and SAM-Med3D's) to model folders."""

from __future__ import annotations

from pathlib import Path

import typer

weights_app = typer.Typer(help="Official pretrained weights: download (Hugging Face) and import (nnU-Net, SAM-Med3D checkpoints).",
                          no_args_is_help=True)

_WHICH_HELP = ("mome: MoME_CHECKPOINT/ (gate + 5 fine-tuned experts -> one MoME model folder); experts: "
               "Pretrained_Experts/ (5 stage-1 experts -> OUT/T1, OUT/T1ce, OUT/T2, OUT/FLAIR, OUT/DWI)")


def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")


@weights_app.command("import-official")
def import_official_cmd(
    src: Path = typer.Argument(..., help="MoME_CHECKPOINT/ or Pretrained_Experts/ (or the folder holding it)"),
    out: Path = typer.Option(..., "--out", "-o", help="model folder to write"),
    which: str = typer.Option("mome", "--which", help=_WHICH_HELP),
    checkpoint: str = typer.Option("checkpoint_best.pth", "--checkpoint",
                                   help="gate file name; expert files add 1..5 before .pth"),
    plans: Path = typer.Option(None, "--plans", help="the authors' plans.json (default: the plans inside the "
                                                     "checkpoints; a file that disagrees with them is refused)"),
    dataset_json: Path = typer.Option(None, "--dataset-json", help="the authors' dataset.json"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output folder"),
) -> None:
    """Convert the official nnU-Net v2.2 checkpoints to a mome model folder (nothing in them is executed)."""
    from mome.weights.official import import_official

    folder = import_official(src, out, which=which, overwrite=overwrite, checkpoint_name=checkpoint,
                             plans=plans, dataset_json=dataset_json)
    typer.echo(f"wrote {folder}")
    if which == "mome":
        typer.echo(f"use it with: mome predict -i IMAGE -o MASK --model {folder}")


@weights_app.command("download")
def download_cmd(
    dest: Path = typer.Option(None, "--dest", help="download folder (default ~/.cache/mome/official)"),
    which: str = typer.Option("mome", "--which", help=_WHICH_HELP),
    out: Path = typer.Option(None, "--out", "-o", help="also import the download into this model folder"),
    endpoint: str = typer.Option(None, "--endpoint", help="a Hugging Face mirror URL (default huggingface.co)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="with --out: replace an existing model folder"),
) -> None:
    """Download the official MoME checkpoints (Apache-2.0) from huggingface.co/ZhangxinruBIT/MoME."""
    from mome.utils.atomic import check_writable
    from mome.weights.official import download_official, import_official

    if out is not None:
        check_writable(out, overwrite)  # fail before a long download
    folder = download_official(dest, which=which, endpoint=endpoint)
    typer.echo(f"downloaded {folder}")
    if out is None:
        typer.echo(f"convert it with: mome weights import-official {folder} --out MODEL_DIR"
                   + (" --which experts" if which == "experts" else ""))
        return
    model = import_official(folder, out, which=which, overwrite=overwrite)
    typer.echo(f"wrote {model}")


@weights_app.command("import-nnunet")
def import_nnunet_cmd(
    src: Path = typer.Argument(..., help="an nnU-Net v2 trained model folder (dataset.json, plans.json, "
                                         "fold_X/checkpoint_final.pth), one fold_X folder, or a checkpoint file"),
    out: Path = typer.Option(..., "--out", "-o", help="model folder to write"),
    fold: str = typer.Option(None, "--fold", help="which fold_X (needed when the folder holds several)"),
    checkpoint: str = typer.Option(None, "--checkpoint",
                                   help="checkpoint file name (default checkpoint_final.pth, else checkpoint_best.pth)"),
    plans: Path = typer.Option(None, "--plans", help="plans.json (default: the folder's, else the checkpoint's)"),
    dataset_json: Path = typer.Option(None, "--dataset-json", help="dataset.json (default: the folder's)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output folder"),
) -> None:
    """Import one fold of any nnU-Net v2 PlainConvUNet model; mome predict then runs nnU-Net's own inference."""
    from mome.weights.nnunet_folder import import_nnunet_folder

    folder = import_nnunet_folder(src, out, fold=fold, checkpoint_name=checkpoint, plans=plans,
                                  dataset_json=dataset_json, overwrite=overwrite)
    typer.echo(f"wrote {folder}")
    typer.echo(f"use it with: mome predict -i IMAGE -o MASK --model {folder}   (needs: pip install 'mome[nnunet]')")


@weights_app.command("import-sam-med3d")
def import_sam_med3d_cmd(
    checkpoint: Path = typer.Argument(..., help="a SAM-Med3D checkpoint, e.g. sam_med3d_turbo.pth (github "
                                                "uni-medical/SAM-Med3D; read with weights_only=True)"),
    out: Path = typer.Option(..., "--out", "-o", help="model folder to write"),
    decoder_heads: int = typer.Option(8, "--decoder-heads",
                                      help="attention heads of the mask decoder (not stored in the file; "
                                           "SAM-Med3D: 8)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output folder"),
) -> None:
    """Convert a SAM-Med3D checkpoint to a mome model folder (interactive: predict with --reference)."""
    from mome.weights.sam_med3d import import_sam_med3d

    folder = import_sam_med3d(checkpoint, out, overwrite=overwrite, decoder_heads=decoder_heads)
    typer.echo(f"wrote {folder}")
    typer.echo(f"use it with: mome predict -i IMAGE -o MASK --model {folder} --reference LESION_MASK --clicks 10")
