"""Cost of nnU-Net's inference (the default for imported nnU-Net / official models) vs ``--fast``.

Builds a paper-size nnU-Net model folder (the official experts' topology: PlainConvUNet, 6 stages,
32..320 features, 128^3 patch; random weights, no download), imports it with mome and predicts one
160x196x160 1 mm image (the MNI crop size) through :class:`mome.inference.nnunet_backend.NnunetPredictor`:

    default   nnU-Net's inference: 128^3 windows, step 0.5, Gaussian, mirroring over 3 axes (8 passes)
    fast      one whole-volume window, no mirroring (``mome predict --fast``)

and prints the wall time of each, the number of network calls, the CPU and torch's thread count.
A MoME runs 5 experts and a gate per call (measured 4.55x one U-Net, docs/performance.md).

    python benchmarks/nnunet_inference.py [--configs fast default] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "weights"))


def paper_folder(root: Path) -> Path:
    """An nnU-Net 2.2 trained-model folder with the official experts' topology (random weights)."""
    from nnunet_fixtures import nnunet_checkpoint, nnunet_plans, plain_conv_unet, save_checkpoint

    topo = dict(base=32, cap=320, kernels=[[3, 3, 3]] * 6, strides=[[1, 1, 1]] + [[2, 2, 2]] * 5,
                n_enc=[2] * 6, n_dec=[2] * 5, patch=[128, 128, 128], spacing=[1.0, 1.0, 1.0])
    plans = nnunet_plans(**topo)
    net = plain_conv_unet(1, 2, seed=0, **topo)
    ds = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "lesion": 1}, "numTraining": 1,
          "file_ending": ".nii.gz"}
    root.mkdir(parents=True)
    (root / "plans.json").write_text(json.dumps(plans))
    (root / "dataset.json").write_text(json.dumps(ds))
    ckpt = nnunet_checkpoint(net, plans, "3d_fullres")
    ckpt["init_args"]["dataset_json"] = ds
    save_checkpoint(ckpt, root / "fold_0" / "checkpoint_final.pth")
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["fast", "default"], choices=["fast", "default"])
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = ap.parse_args()

    from mome.inference.nnunet_backend import NnunetPredictor
    from mome.utils.provenance import provenance, versions
    from mome.weights.nnunet_folder import import_nnunet_folder
    from mome.weights.store import load_model, read_model_record

    rng = np.random.default_rng(0)
    shape = (160, 196, 160)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    data = np.where((grid ** 2).sum(0) < 0.8, 300 + 50 * rng.standard_normal(shape), 0).astype(np.float32)
    image = nib.Nifti1Image(data, np.eye(4))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = import_nnunet_folder(paper_folder(Path(tmp) / "model"), Path(tmp) / "imported")
        model, record = load_model(model_dir), read_model_record(model_dir)
        for name in args.configs:
            predictor = NnunetPredictor(model, record, device="cpu", fast=name == "fast")
            calls = []
            forward = predictor.network.forward
            predictor.network.forward = lambda x, f=forward: calls.append(1) or f(x)
            t0 = time.perf_counter()
            predictor.predict_image(image)
            seconds = time.perf_counter() - t0
            rows.append({"config": name, "seconds": round(seconds, 1), "network_calls": len(calls)})
            print(f"{name:8s} {seconds:8.1f} s  {len(calls):3d} network calls", flush=True)
    facts = {"cpu": versions()["cpu"],
             "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
             "image": list(shape), "network": "PlainConvUNet 32..320, 6 stages (one official expert)"}
    print(json.dumps(facts))
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, **facts, **provenance(seed=0)}, indent=2))


if __name__ == "__main__":
    main()
