"""``mome predict -i IN -o OUT``: segment brain lesions in one NIfTI file or a folder of them."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

_HELP = (
    "Segment brain lesions in a 3D MR image (T1, T2, T1ce, FLAIR or DWI; no modality needed).\n\n"
    "IN is a .nii/.nii.gz file (OUT: the mask file, ending .nii or .nii.gz) or a folder (batch mode: OUT is "
    "a folder, one mask per input named like it, plus OUT/stats.csv). Masks are uint8 (1 = lesion) in the "
    "input's exact geometry. Without --preprocess the input should be skull-stripped and MNI-like."
)


def register(app: typer.Typer) -> None:
    app.command("predict", help=_HELP)(predict)


def predict(
    inputs: list[Path] = typer.Option(..., "-i", "--input",
                                      help="a .nii/.nii.gz image, or a folder of them (batch); repeat -i for one "
                                           "subject's sequences (T1, T2, FLAIR...): one fused mask"),
    output: Path = typer.Option(..., "-o", "--output",
                                help="mask file (.nii/.nii.gz) for one image; a folder in batch mode"),
    model: str = typer.Option(None, "-m", "--model",
                              help="registered model name or model folder (default: the installed default)"),
    preprocess: bool = typer.Option(False, "--preprocess",
                                    help="register to MNI152, skull-strip and crop first; mask mapped back"),
    registration: str = typer.Option("auto", "--registration",
                                     help="with --preprocess: auto (a scan on a known MNI152 grid, e.g. FSL's "
                                          "182x218x182, is not registered again), always, or never"),
    fast: bool = typer.Option(False, "--fast",
                              help="imported nnU-Net / official models: one whole-volume window, no mirroring "
                                   "(default for them: nnU-Net's windows of the training patch, step 0.5, "
                                   "Gaussian, mirroring; README, Pretrained weights, has the costs)"),
    tta: bool = typer.Option(False, "--tta", help="mirroring test-time augmentation (8 flips, ~8x slower)"),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if available, else CPU), cpu or cuda"),
    precision: str = typer.Option("auto", "--precision",
                                  help="auto (default: fp32 on a CPU, bf16 autocast on a GPU with bf16), fp32 or "
                                       "bf16 (on a CPU with native bf16 about 1.4-2x faster, masks within "
                                       "Dice 0.986 of fp32: docs/performance.md)"),
    backend: str = typer.Option(None, "--backend",
                                help="auto (default, or $MOME_BACKEND: OpenVINO on a CPU where it is installed, "
                                     "else PyTorch), torch or openvino (README, Performance)"),
    overlap: float = typer.Option(0.5, "--overlap", help="sliding-window overlap fraction in [0, 1)"),
    whole_volume: bool = typer.Option(True, "--whole-volume/--sliding-window",
                                      help="one window over the whole (padded) volume (default: measured "
                                           "faster and no less accurate) or Gaussian-weighted sliding windows "
                                           "of the training patch (less memory; docs/performance.md)"),
    grouped_experts: bool = typer.Option(False, "--grouped-experts/--separate-experts",
                                         help="run MoME's experts as one grouped-convolution network (measured "
                                              "slower on CPU and GPU, so off by default)"),
    skip_experts: float = typer.Option(0.0, "--skip-experts",
                                       help="skip experts whose gate-weight share in a window is below this "
                                            "fraction (0 = off; see docs/performance.md)"),
    channels_last: bool = typer.Option(False, "--channels-last", help="channels_last_3d memory format"),
    probabilities: bool = typer.Option(False, "--probabilities",
                                       help="also write the lesion probability map (float32)"),
    stats: bool = typer.Option(False, "--stats",
                               help="also write lesion volume (ml), lesion count and gate expert shares (JSON)"),
    preview: bool = typer.Option(False, "--preview", help="also write a PNG with three orthogonal slices"),
    report: bool = typer.Option(False, "--report",
                                help="also write an HTML report (STEM_report.html: stats, QC, gate shares, slices of "
                                     "every sequence, 3D viewer; niivue.umd.js beside it; works offline)"),
    reference: Path = typer.Option(None, "--reference",
                                   help="interactive models (SAM-Med3D) only: the reference lesion mask on the "
                                        "image's grid; the clicks are simulated from it (this is not automatic "
                                        "segmentation: the mask is the answer)"),
    clicks: int = typer.Option(None, "--clicks", help="with --reference: number of simulated clicks (default 10)"),
    seed: int = typer.Option(0, "--seed", help="with --reference: seed of the click choice (deterministic)"),
    uncertainty: bool = typer.Option(False, "--uncertainty",
                                     help="also write a voxel uncertainty map (MoME's expert disagreement; with "
                                          "--tta also mirror disagreement) and per-lesion / per-scan values"),
    fusion: str = typer.Option(None, "--fusion",
                               help="with several -i: weighted (default: by the model's measured reliability per "
                                    "modality), mean, max or learned (a stacking fitted on training subjects, "
                                    "for models that carry one) (README, Multi-sequence fusion)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace existing outputs"),
) -> None:
    from mome.errors import InputError

    from mome.data.registration import REGISTRATION_MODES
    from mome.errors import ConfigError

    for one in inputs:
        if not one.exists() and not one.is_symlink():  # a link is judged (loop, broken) by load_nifti
            raise InputError(f"input {one} does not exist")
    input = inputs[0]
    if len(inputs) > 1 and (any(p.is_dir() for p in inputs) or reference is not None):
        raise InputError("several -i are one subject's sequences (files), fused into one mask; a folder (batch) or "
                         "--reference takes one -i")
    if fusion is not None and len(inputs) < 2:
        raise ConfigError("--fusion needs two or more -i (one subject's sequences)")
    from mome.inference.fusion import FUSION_RULES

    if fusion is not None and fusion not in FUSION_RULES:
        raise ConfigError(f"--fusion {fusion!r}; use one of {', '.join(FUSION_RULES)}")
    if registration not in REGISTRATION_MODES:
        raise ConfigError(f"--registration {registration!r}; use one of {', '.join(REGISTRATION_MODES)}")
    options = dict(device=device, tta=tta, precision=precision, overlap=overlap, grouped_experts=grouped_experts,
                   skip_experts=skip_experts, channels_last=channels_last, fast=fast, backend=backend)
    options["patch_size"] = "whole" if whole_volume else None  # None: the training patch, sliding
    flags = dict(probabilities=probabilities, stats=stats, preview=preview, report=report, overwrite=overwrite,
                 preprocess=preprocess, registration=registration, uncertainty=uncertainty)
    if uncertainty:
        options["uncertainty"] = True
    if clicks is not None and reference is None:
        raise InputError("clicks were requested without a reference mask: simulated clicks are drawn from the "
                         "reference lesion (pass --reference MASK)")
    if reference is not None:
        if input.is_dir():
            raise InputError("--reference takes one image (-i IMAGE): interactive models segment one image at a "
                             "time from its own reference mask")
        options.update(reference=reference, clicks=clicks, seed=seed)
    if len(inputs) > 1:
        _predict_subject(inputs, output, model, options, {**flags, "fusion": fusion})
    elif input.is_dir():
        failed = _predict_folder(input, output, model, options, flags)
        if failed:
            raise typer.Exit(1)
    else:
        _predict_file(input, output, model, options, flags)


def _load_predictor(model, options):
    """Resolve the model once; say once where it comes from (and its notice, e.g. synthetic training)."""
    from mome.inference.api import make_predictor

    predictor, record = make_predictor(model, **options)
    resolved = record.get("resolved", {})
    name = resolved.get("name") or resolved.get("folder")
    typer.echo(f"model: {name} on {predictor.device}")
    if resolved.get("notice"):
        typer.echo(f"note: {resolved['notice']}")
    return predictor


def _predict_file(path: Path, out: Path, model, options: dict, flags: dict) -> None:
    from mome.inference.api import output_paths, predict_to_files
    from mome.utils.atomic import check_writable
    from mome.utils.nifti import check_segmentable, load_nifti

    if out.is_dir():  # a folder as OUT for one image: the mask is named like the input inside it
        out = out / path.name
    paths = output_paths(out, probabilities=flags["probabilities"], stats=flags["stats"],
                         preview=flags["preview"], uncertainty=flags["uncertainty"], report=flags["report"])
    for p in paths.values():  # refuse before any work so that nothing is written
        check_writable(p, flags["overwrite"])
    img, data = load_nifti(path)
    check_segmentable(img, data, path)  # a bad input fails before the model is loaded
    if options.get("reference") is not None:
        from mome.inference.interactive import load_reference

        load_reference(options["reference"], img)  # missing, unreadable, empty or off-grid: before the model
    predictor = _load_predictor(model, {k: v for k, v in options.items() if k != "reference"})
    if options.get("reference") is not None:
        flags = {**flags, "reference": options["reference"]}
    result, paths = predict_to_files(path, out, predictor, **flags)
    _summary(result.stats)
    for kind, p in paths.items():
        typer.echo(f"{kind}: {p}")


def _predict_subject(paths: list[Path], out: Path, model, options: dict, flags: dict) -> None:
    from mome.inference.api import output_paths, predict_to_files
    from mome.inference.subject import check_same_grid, check_subject
    from mome.utils.atomic import check_writable
    from mome.utils.nifti import check_segmentable, load_nifti

    check_subject(paths)
    if out.is_dir():
        out = out / paths[0].name
    for p in output_paths(out, probabilities=flags["probabilities"], stats=flags["stats"],
                          preview=flags["preview"], report=flags["report"],
                          uncertainty=flags["uncertainty"]).values():
        check_writable(p, flags["overwrite"])
    images = []
    for path in paths:  # every sequence (and their grid) is checked before the model is loaded
        img, data = load_nifti(path)
        check_segmentable(img, data, path)
        images.append(img)
    if not flags["preprocess"]:
        check_same_grid(images, paths)
    predictor = _load_predictor(model, options)
    result, written = predict_to_files(paths, out, predictor, **flags)
    fusion = result.stats["fusion"]
    typer.echo(f"fused {len(paths)} sequences ({fusion['rule']}" + (", weights " + ", ".join(
        f"{s['modality_used']} {w:.2f}" for s, w in zip(result.stats["sequences"], fusion["weights"]))
        if fusion["weights"] else "") + ")")
    _summary(result.stats)
    for kind, p in written.items():
        typer.echo(f"{kind}: {p}")


def _predict_folder(folder: Path, out: Path, model, options: dict, flags: dict) -> list[str]:
    """Batch mode; returns the names of the images that failed (each reported on stderr)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from mome.errors import InputError, MomeError
    from mome.inference.api import predict_to_files
    from mome.inference.outputs import stats_row, write_stats_csv
    from mome.utils.atomic import check_writable
    from mome.utils.nifti import is_nifti_path

    images = sorted(p for p in folder.iterdir() if p.is_file() and is_nifti_path(p))
    if not images:
        raise InputError(f"input folder {folder} has no .nii or .nii.gz files")
    if out.exists() and not out.is_dir():
        raise InputError(f"in batch mode the output must be a folder; {out} is a file")
    if out.resolve() == folder.resolve():
        raise InputError("the output folder is the input folder (masks would replace the images); choose another")
    csv_path = check_writable(out / "stats.csv", flags["overwrite"])
    predictor = _load_predictor(model, options)
    rows, failed = [], []
    err = Console(stderr=True, highlight=False)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("segmenting", total=len(images))
        for path in images:
            bar.update(task, description=f"segmenting {path.name}")
            try:
                result, _ = predict_to_files(path, out / path.name, predictor, **flags)
                rows.append({"image": path.name, "status": "ok", **stats_row(result.stats)})
            except MomeError as exc:
                failed.append(path.name)
                rows.append({"image": path.name, "status": "error", "error": str(exc)})
                bar.console.print(f"mome: error: {path.name}: {exc}", markup=False)
            except Exception as exc:  # noqa: BLE001 - one broken file must not stop a batch
                failed.append(path.name)
                rows.append({"image": path.name, "status": "error", "error": f"{type(exc).__name__}: {exc}"})
                bar.console.print(f"mome: error: {path.name}: unexpected {type(exc).__name__}: {exc}",
                                  markup=False)
            bar.advance(task)
    out.mkdir(parents=True, exist_ok=True)
    write_stats_csv(rows, csv_path, overwrite=flags["overwrite"])
    typer.echo(f"{len(images) - len(failed)} of {len(images)} images segmented; outputs in {out}")
    typer.echo(f"stats: {csv_path}")
    if failed:
        print(f"mome: error: {len(failed)} image(s) failed: {', '.join(failed)}", file=sys.stderr)
    return failed


def _summary(stats: dict) -> None:
    line = f"lesion volume {stats['lesion_volume_ml']:.2f} ml in {stats['lesion_count']} lesion(s)"
    if stats.get("uncertainty_scan") is not None:
        line += f"; mean uncertainty in the lesions {stats['uncertainty_scan']:.3f}"
    settings = stats.get("settings") or {}
    if settings.get("interactive"):
        line += (f"; {settings['clicks']} simulated clicks from the reference, Dice to it after the last click "
                 f"{settings['last_click_dice']:.3f} (best click {settings['best_click']}: "
                 f"{settings['best_click_dice']:.3f})")
    if stats.get("implicit_modality"):
        share = stats["expert_weight_share"][stats["implicit_modality"]]
        line += f"; gate favours the {stats['implicit_modality']} expert ({share:.0%} of the weight)"
    typer.echo(line)
    for warning in (stats.get("qc") or {}).get("warnings", []):
        typer.echo(f"mome: warning: {warning}", err=True)
