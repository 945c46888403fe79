"""How much of the gate's weight each expert holds on real scans (issue 18: can experts be skipped?).

    python benchmarks/gate_shares.py ../shared/data/real/ms_patient07/{t1,t1ce,t2,flair}.nii.gz [--model DIR]

Per image (one whole-volume window, eager PyTorch fp32, brain = non-zero voxels): each expert's share of the
summed absolute gate weights (mean and 1st percentile over the brain) and the share of brain voxels where
all of that expert's weights are below 0.01 (where it could be skipped without changing the fused logits).
"""

from __future__ import annotations

import argparse

import nibabel as nib
import numpy as np
import torch

from mome.inference.api import make_predictor, predict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+")
    ap.add_argument("--model", default=None, help="model folder or name (default: the embedded model)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    predictor, _ = make_predictor(args.model, backend="torch")
    print("| image | experts | mean share | 1st-percentile share | voxels with all weights < 0.01 |")
    print("|---|---|---|---|---|")
    for path in args.images:
        prediction = predict(path, predictor, preprocess=False).prediction
        if prediction.gates is None:
            raise SystemExit(f"{path}: the model has no gate (not a MoME)")
        brain = np.asarray(nib.load(path).dataobj) != 0
        weights = np.abs(prediction.gates[:, :, brain])  # (experts, classes, voxels)
        share = weights.sum(1) / np.maximum(weights.sum((0, 1)), 1e-12)[None]
        negligible = (weights.max(1) < 0.01).mean(1)
        fmt = lambda v, d=3: " / ".join(f"{x:.{d}f}" for x in v)  # noqa: E731
        print(f"| {path} | {', '.join(prediction.expert_names)} | {fmt(share.mean(1))} | "
              f"{fmt(np.percentile(share, 1, axis=1))} | {fmt(negligible, 4)} |")


if __name__ == "__main__":
    main()
