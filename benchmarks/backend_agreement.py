"""Does a backend or precision change a trained model's masks? Each against eager PyTorch fp32, per image.

    python benchmarks/backend_agreement.py --collection <cpu synth>/collection.json --per-task 1 \
        --real ../shared/data/real/ms_patient07 --json benchmarks/results/backend_agreement.json

For every image (the first N test images of every task of a collection, and the real case's t1, t1ce, t2
and flair), the model (default: the embedded model) predicts with one whole-volume window (mome predict's
default) in eager PyTorch fp32 (the reference) and in each configuration (default: PyTorch bf16, OpenVINO
fp32, OpenVINO bf16; bf16 only where the CPU has it natively). Reported per configuration: the smallest mask
Dice against the reference over all images, the largest lesion-probability difference, the mean Dice to
the labels, and the mean time per image (after one untimed prediction, so OpenVINO's conversion is not in it).
Issue 18's accuracy target: mask Dice >= 0.995 on every image and probabilities within 0.01.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from mome.evaluation.metrics import dice

CONFIGS = {  # name: (backend, precision)
    "torch-bf16": ("torch", "bf16"),
    "openvino-fp32": ("openvino", "fp32"),
    "openvino-bf16": ("openvino", "bf16"),
}


def images(args) -> list[tuple[str, nib.Nifti1Image, np.ndarray | None]]:
    """(name, image, label mask or None) for every image to compare on."""
    from mome.data.collection import load_collection

    out = []
    if args.collection:
        test = load_collection(args.collection).filter(split="test").cases
        for task in sorted({c.task for c in test}):
            for case in [c for c in test if c.task == task][: args.per_task]:
                label = None if case.label is None else np.asarray(nib.load(str(case.label)).dataobj) > 0
                out.append((f"synthetic {case.id}", nib.load(str(case.image)), label))
    if args.real:
        label = np.asarray(nib.load(str(args.real / "lesion.nii.gz")).dataobj) > 0
        for mod in ("t1", "t1ce", "t2", "flair"):
            path = next(args.real.glob(f"{mod}.nii*"), None)
            if path is not None:
                out.append((f"real {args.real.name} {mod}", nib.load(str(path)), label))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model name or folder (default: the embedded model)")
    ap.add_argument("--collection", type=Path, default=None, help="synthetic test cases (collection.json)")
    ap.add_argument("--per-task", type=int, default=1)
    ap.add_argument("--real", type=Path, default=None, help="folder with t1/t1ce/t2/flair + lesion.nii.gz")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = ap.parse_args()
    import torch

    from mome.inference.backends import cpu_capability
    from mome.inference.predictor import Predictor, resolve_precision
    from mome.utils.provenance import versions

    torch.set_num_threads(args.threads)
    cases = images(args)
    if not cases:
        ap.error("nothing to compare: give --collection and/or --real")
    native_bf16 = resolve_precision("auto", torch.device("cpu")) == "bf16"
    configs = [c for c in args.configs if CONFIGS[c][1] == "fp32" or native_bf16]
    v = versions()
    print(f"# backend agreement, {args.threads} threads, CPU: {v['cpu']} ({cpu_capability()}), torch {v['torch']}")

    def run(backend, precision):
        predictor, record = Predictor.from_name(args.model, gates=False, patch_size="whole", backend=backend,
                                                precision=precision)
        predictor.predict_image(cases[0][1])  # untimed: conversion, first-call allocations
        probs, secs = [], []
        for _, img, _ in cases:
            t0 = time.perf_counter()
            probs.append(predictor.predict_image(img).lesion_probability)
            secs.append(time.perf_counter() - t0)
        return probs, float(np.mean(secs)), predictor.backend_name, record

    ref, ref_s, ref_backend, record = run("torch", "fp32")
    rows = [{"config": "torch-fp32 (reference)", "backend": ref_backend, "seconds": ref_s, "min_mask_dice": 1.0,
             "max_abs_dp": 0.0, "label_dice": _label_dice(ref, cases), "per_image": []}]
    for name in configs:
        probs, secs, backend, _ = run(*CONFIGS[name])
        per = [{"image": c[0], "mask_dice": dice(p > 0.5, r > 0.5), "max_abs_dp": float(np.abs(p - r).max())}
               for c, p, r in zip(cases, probs, ref)]
        rows.append({"config": name, "backend": backend, "seconds": secs,
                     "min_mask_dice": min(x["mask_dice"] for x in per),
                     "max_abs_dp": max(x["max_abs_dp"] for x in per),
                     "label_dice": _label_dice(probs, cases), "per_image": per})
    print(f"\nmodel {record.get('resolved', {}).get('name') or args.model or 'embedded'}, {len(cases)} images "
          f"({sum(c[0].startswith('real') for c in cases)} real), one whole-volume window\n")
    print("| configuration | backend | s / image | min mask Dice vs fp32 eager | max abs dp | mean Dice to labels |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['backend'].split('-')[0]} | {r['seconds']:.2f} | {r['min_mask_dice']:.4f} | "
              f"{r['max_abs_dp']:.4f} | {r['label_dice']:.4f} |")
    worst = [(x["image"], r["config"], x["mask_dice"]) for r in rows for x in r["per_image"]]
    if worst:
        name, config, value = min(worst, key=lambda t: t[2])
        print(f"\nlowest mask Dice: {value:.4f} ({config} on {name})")
    if args.json:
        args.json.write_text(json.dumps({"versions": v, "cpu_capability": cpu_capability(), "threads": args.threads,
                                         "model": args.model or "embedded", "rows": rows}, indent=2))


def _label_dice(probs, cases) -> float:
    vals = [dice(p > 0.5, lab) for p, (_, _, lab) in zip(probs, cases) if lab is not None]
    return float(np.mean(vals)) if vals else float("nan")


if __name__ == "__main__":
    main()
