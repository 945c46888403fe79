"""``mome preprocess`` (scan -> MNI crop) and ``mome to-native`` (MNI-crop mask -> the scan's grid)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("preprocess")(preprocess_cmd)
    app.command("to-native")(to_native_cmd)


def preprocess_cmd(
    image: Path = typer.Option(..., "--input", "-i", help="native scan (.nii / .nii.gz), skull on or off"),
    out_dir: Path = typer.Option(..., "--output", "-o", help="output folder"),
    label: Optional[Path] = typer.Option(None, "--label", help="0/1 lesion mask on the scan's grid"),
    fast: bool = typer.Option(False, "--fast", help="skip the full-resolution registration level (~2x faster)"),
    similarity: bool = typer.Option(False, "--similarity", help="last stage rigid + isotropic scale instead of "
                                    "affine (steadier on thick-slice scans whose field of view cuts the brain)"),
    registration: str = typer.Option("auto", "--registration",
                                     help="auto (a scan on a known MNI152 grid, e.g. FSL's 182x218x182, is not "
                                          "registered again), always, or never (take the scan as registered)"),
    profile: str = typer.Option("mome", "--profile",
                                help="mome (mome's crop, template brain mask on every scan) or authors (the official "
                                     "weights' inputs: the authors' crop, brain mask only on skull-on scans)"),
    skull_strip: str = typer.Option("auto", "--skull-strip",
                                    help="with --profile authors: auto (mask only skull-on scans), yes or no"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a non-empty output folder"),
) -> None:
    """Register a scan to MNI152 (rigid then affine, antspyx), brain-mask it and crop it to 160x196x160 at 1 mm."""
    from rich.console import Console

    from mome.data.preprocess import preprocess
    import dataclasses

    from mome.data.registration import FAST, REGISTRATION_MODES, RegistrationSettings
    from mome.errors import ConfigError

    if registration not in REGISTRATION_MODES:
        raise ConfigError(f"--registration {registration!r}; use one of {', '.join(REGISTRATION_MODES)}")

    settings = FAST if fast else RegistrationSettings()
    if similarity:
        settings = dataclasses.replace(settings, final_transform="Similarity")
    console = Console(stderr=True)
    with console.status(f"registering {image} to MNI152 (about a minute on 2 cores)"):
        res = preprocess(image, out_dir, label, overwrite=overwrite, settings=settings, registration=registration,
                         profile=profile, skull_strip=skull_strip)
    out = Console()
    out.print(f"wrote {res.out_dir}: {res.image_path.name}, {res.brain_mask_path.name}"
              + (f", {res.label_path.name}" if res.label_path else "") + f", {res.transform_path.name}, "
              f"{res.record_path.name}", soft_wrap=True, highlight=False)
    if res.ncc_before == res.ncc_after and res.ncc_before is not None and _skipped(res):
        out.print(f"no registration: {_skipped(res)}; NCC with the MNI152 template {res.ncc_after:.3f}",
                  highlight=False)
    else:
        out.print(f"NCC with the MNI152 template in its brain mask: {res.ncc_before:.3f} unregistered -> "
                  f"{res.ncc_after:.3f} registered", highlight=False)
        if res.mi_after is not None:
            out.print(f"mutual information with the template: {res.mi_before:.3f} unregistered -> {res.mi_after:.3f} "
                      "registered (what the attempts are chosen by; NCC is negative for a correct T2)",
                      highlight=False)


def _skipped(res) -> str | None:
    import json

    return json.loads(res.record_path.read_text())["registration"].get("skipped")


def to_native_cmd(
    mask: Path = typer.Option(..., "--input", "-i", help="mask or probability map on the MNI crop"),
    preprocessed: Path = typer.Option(..., "--preprocessed", "-p", help="the folder written by mome preprocess"),
    out: Path = typer.Option(..., "--output", "-o", help="output NIfTI on the original scan's grid"),
    linear: bool = typer.Option(False, "--linear", help="interpolate probabilities linearly, then threshold"),
    threshold: float = typer.Option(0.5, "--threshold", help="probability above which a voxel is lesion "
                                    "(with --linear)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output"),
) -> None:
    """Map a mask from the MNI crop back to the scan's native voxel grid (same shape and affine)."""
    import nibabel as nib

    from mome.data.preprocess import to_native
    from mome.utils.atomic import atomic_path, check_writable

    check_writable(out, overwrite)
    img = to_native(mask, preprocessed, "linear" if linear else "nearest", threshold)
    with atomic_path(out, overwrite=overwrite) as tmp:
        nib.save(img, str(tmp))
    typer.echo(f"wrote {out} ({'x'.join(map(str, img.shape))}, the grid of the original scan)")
