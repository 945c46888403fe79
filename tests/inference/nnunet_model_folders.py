"""Tiny trained-model folders in nnU-Net v2's exact on-disk format (random weights), and test images."""

from __future__ import annotations

import copy
import json
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "weights"))
from nnunet_fixtures import SMALL, nnunet_checkpoint, nnunet_plans, plain_conv_unet, save_checkpoint  # noqa: E402

DATASET_JSON = {"channel_names": {"0": "FLAIR"}, "labels": {"background": 0, "lesion": 1}, "numTraining": 3,
                "file_ending": ".nii.gz"}


def new_format(plans: dict) -> dict:
    """The plans as nnU-Net >= 2.4 writes them (an ``architecture`` entry), converted by nnU-Net itself."""
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

    plans = copy.deepcopy(plans)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, cfg in plans["configurations"].items():
            if "UNet_class_name" in cfg:
                plans["configurations"][name] = ConfigurationManager(cfg).configuration
    return plans


def write_model_folder(root: Path, *, scheme: str = "ZScoreNormalization", use_mask: bool = True,
                       reader: str = "SimpleITKIO", transpose: tuple[int, int, int] = (0, 1, 2),
                       spacing: tuple[float, float, float] = (1.0, 0.9, 0.8), mirror_axes=(0, 1, 2),
                       fmt: str = "2.2", checkpoint: str = "checkpoint_final.pth", fold: str = "0",
                       seed: int = 3) -> Path:
    """``root/{dataset.json, plans.json, fold_F/CHECKPOINT}`` as nnU-Net's trainer leaves them."""
    topo = dict(SMALL, spacing=list(spacing))
    plans = nnunet_plans(**topo)
    cfg = plans["configurations"]["3d_fullres"]
    cfg["normalization_schemes"], cfg["use_mask_for_norm"] = [scheme], [use_mask]
    plans["image_reader_writer"] = reader
    plans["transpose_forward"] = list(transpose)
    plans["transpose_backward"] = [int(i) for i in np.argsort(transpose)]
    if fmt != "2.2":
        plans = new_format(plans)
    net = plain_conv_unet(1, 2, seed=seed, **SMALL)
    root.mkdir(parents=True, exist_ok=True)
    (root / "plans.json").write_text(json.dumps(plans, indent=2))
    (root / "dataset.json").write_text(json.dumps(DATASET_JSON, indent=2))
    ckpt = nnunet_checkpoint(net, plans, "3d_fullres")  # nnU-Net saves the uncompiled keys
    ckpt["init_args"]["dataset_json"] = DATASET_JSON
    ckpt["init_args"]["fold"] = fold
    ckpt["inference_allowed_mirroring_axes"] = mirror_axes
    save_checkpoint(ckpt, root / f"fold_{fold}" / checkpoint)
    return root


def write_image(path: Path, shape=(34, 30, 20), spacing=(1.0, 1.0, 1.0), hole: bool = True, seed: int = 0,
                full_box: bool = False) -> Path:
    """A head-like float32 image: noisy ellipsoid with a zero background (and a zero hole inside it).

    ``full_box``: two opposite corner voxels get 1e-30, so nnU-Net's non-zero box is the whole image while
    the values are, to float32, those of the zero background (stock nnU-Net then does what the authors'
    fork does).
    """
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    inside = (grid ** 2).sum(0) < 0.75
    img = np.where(inside, 300 + 60 * rng.standard_normal(shape) + 80 * grid[0], 0).astype(np.float32)
    img[inside & ((grid[0] - 0.2) ** 2 + grid[1] ** 2 + grid[2] ** 2 < 0.12)] += 250  # a bright "lesion"
    if hole:
        img[inside & (grid[0] ** 2 + (grid[1] + 0.4) ** 2 + grid[2] ** 2 < 0.03)] = 0
    if full_box:
        img[0, 0, 0] = img[-1, -1, -1] = 1e-30
    affine = np.diag([-spacing[0], spacing[1], spacing[2], 1.0])  # LAS voxel order, as many scanners write
    affine[:3, 3] = [40.0, -30.0, -20.0]
    nib.save(nib.Nifti1Image(img, affine), str(path))
    return path
