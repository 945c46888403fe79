"""Post-training int8 quantisation (nncf) of the OpenVINO network: how much faster, how different? (issue 18)

    pip install nncf==3.4.0            # not a mome dependency: int8 is measured here, not offered
    python benchmarks/int8_quantization.py --collection <quick synth>/collection.json --per-task 2 \
        --real ../shared/data/real/ms_patient07 --calibration 10 --json benchmarks/results/int8_quantization.json
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/int8_quantization.py --speed-only

1. Speed: one paper-size U-Net (random weights, the paper preset's first expert), one whole 160x224x160
   volume, OpenVINO fp32 vs int8, after one untimed call at that size (shape-specific kernels).
2. Agreement on a trained model (default: the embedded model): the OpenVINO network quantised by
   ``nncf.quantize`` (fast bias correction; ``--preset performance|mixed``, or ``convolutions``: int8 on the convolutions only,
   the instance norms' element-wise arithmetic left in float32) with a calibration set of the
   network's own inputs on ``--calibration`` training images of the collection (never the test images),
   then every test image (first ``--per-task`` per task) and the real case's four sequences predicted with
   one whole-volume window: mask Dice and largest probability difference against eager PyTorch fp32, Dice
   to the labels, seconds per image. Issue 18's accuracy bar: mask Dice >= 0.995 on every image.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from backend_agreement import images
from mome.evaluation.metrics import dice

SPEED_SHAPE = (160, 224, 160)  # the MNI box 160x196x160 at 1 mm, padded to the paper U-Net's divisor


def quantize(ov_model, inputs: list[np.ndarray], preset: str):
    import nncf

    kwargs = {"preset": nncf.QuantizationPreset.MIXED} if preset == "mixed" else {}
    if preset == "convolutions":  # int8 on the convolutions only: the norms' arithmetic stays in float32
        kwargs = {"ignored_scope": nncf.IgnoredScope(types=["Add", "Multiply", "Divide", "Subtract", "ReduceMean",
                                                             "ReduceSum", "Sqrt", "PRelu"], validate=False)}
    return nncf.quantize(ov_model, nncf.Dataset(inputs), subset_size=len(inputs), fast_bias_correction=True,
                         **kwargs)


def speed(threads: int, preset: str) -> dict:
    """Seconds for one whole paper-size volume through one U-Net, fp32 and int8 (random weights)."""
    import torch
    from scipy.ndimage import gaussian_filter

    import mome
    from mome.inference.backends import NetworkView, OpenVINONetwork, compile_cpu

    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    def smooth(size):  # brain-like smooth structure + noise; only the speed depends on it
        return (gaussian_filter(rng.normal(size=size), 3) * 8 + rng.normal(size=size) * 0.3).astype(np.float32)[
            None, None]

    view = NetworkView(mome.create_model("paper").experts[0]).eval()
    fp32 = OpenVINONetwork(view, (64, 64, 64), cache=False, threads=threads)
    ov_model = fp32._convert((64, 64, 64))
    t0 = time.perf_counter()
    int8_model = quantize(ov_model, [smooth((64, 64, 64)) for _ in range(4)], preset)
    quant_s = time.perf_counter() - t0
    image = smooth(SPEED_SHAPE)
    out = {"shape": list(SPEED_SHAPE), "quantize_s": quant_s}
    for name, compiled in (("fp32", fp32.compiled), ("int8", compile_cpu(int8_model, threads))):
        compiled(image)
        t0 = time.perf_counter()
        compiled(image)
        out[f"{name}_s"] = time.perf_counter() - t0
    out["speedup"] = out["fp32_s"] / out["int8_s"]
    return out


def agreement(args) -> dict:
    from mome.data.collection import load_collection
    from mome.inference.backends import compile_cpu
    from mome.inference.predictor import Predictor

    train = load_collection(args.collection).filter(split="train").cases
    rng = np.random.default_rng(args.seed)
    calibration = [train[i] for i in rng.choice(len(train), min(args.calibration, len(train)), replace=False)]

    def predictor(backend):
        return Predictor.from_name(args.model, gates=False, patch_size="whole", backend=backend, precision="fp32")[0]

    ref, ov_fp32, ov_int8 = predictor("torch"), predictor("openvino"), predictor("openvino")
    captured = []
    forward = ov_fp32.compiled.forward

    def capture(x):  # the network's own inputs (normalised, padded windows) on the calibration images
        captured.append(np.ascontiguousarray(x.detach().float().cpu().numpy()))
        return forward(x)

    ov_fp32.compiled.forward = capture
    for case in calibration:
        ov_fp32.predict_image(nib.load(str(case.image)))
    ov_fp32.compiled.forward = forward
    t0 = time.perf_counter()
    int8_model = quantize(ov_fp32.compiled._convert(captured[0].shape[2:]), captured, args.preset)
    quant_s = time.perf_counter() - t0
    ov_int8.compiled.compiled = compile_cpu(int8_model, args.threads)
    cases = images(args)
    ref.predict_image(cases[0][1]), ov_int8.predict_image(cases[0][1])  # untimed first calls
    per, secs = [], {"fp32_torch": [], "int8_openvino": []}
    for name, img, label in cases:
        t0 = time.perf_counter()
        r = ref.predict_image(img).lesion_probability
        secs["fp32_torch"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        q = ov_int8.predict_image(img).lesion_probability
        secs["int8_openvino"].append(time.perf_counter() - t0)
        per.append({"image": name, "mask_dice": dice(q > 0.5, r > 0.5), "max_abs_dp": float(np.abs(q - r).max()),
                    "label_dice_fp32": None if label is None else dice(r > 0.5, label),
                    "label_dice_int8": None if label is None else dice(q > 0.5, label)})
    return {"calibration_images": [c.id for c in calibration], "calibration_inputs": len(captured),
            "quantize_s": quant_s, "preset": args.preset, "per_image": per,
            "seconds": {k: float(np.mean(v)) for k, v in secs.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model name or folder (default: the embedded model)")
    ap.add_argument("--collection", type=Path, default=None, help="calibration (train) and test cases")
    ap.add_argument("--per-task", type=int, default=2)
    ap.add_argument("--real", type=Path, default=None, help="folder with t1/t1ce/t2/flair + lesion.nii.gz")
    ap.add_argument("--calibration", type=int, default=10, help="training images whose windows calibrate")
    ap.add_argument("--preset", choices=["performance", "mixed", "convolutions"], default="performance",
                    help="nncf preset; convolutions: performance with every element-wise op left in float32")
    ap.add_argument("--speed-only", action="store_true", help="only the paper-size U-Net timing")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    import nncf
    import torch

    from mome.inference.backends import cpu_capability, import_openvino
    from mome.utils.provenance import versions

    if not args.speed_only and args.collection is None:
        ap.error("--collection is needed for the calibration images (or give --speed-only)")
    torch.set_num_threads(args.threads)
    v = versions()
    head = (f"# int8 (nncf {nncf.__version__}, openvino {import_openvino().__version__}), {args.threads} threads, "
            f"CPU: {v['cpu']} ({cpu_capability()})")
    print(head)
    result = {"versions": v, "nncf": nncf.__version__, "cpu_capability": cpu_capability(), "threads": args.threads,
              "speed": speed(args.threads, args.preset)}
    s = result["speed"]
    print(f"\npaper-size U-Net, whole {'x'.join(map(str, s['shape']))}: fp32 {s['fp32_s']:.1f} s, int8 "
          f"{s['int8_s']:.1f} s ({s['speedup']:.2f}x; quantisation {s['quantize_s']:.0f} s)")
    if not args.speed_only:
        result["agreement"] = a = agreement(args)
        per = a["per_image"]
        print(f"\nmodel {args.model or 'embedded'}, preset {a['preset']}, calibration: {a['calibration_inputs']} "
              f"windows of {len(a['calibration_images'])} training images, quantisation {a['quantize_s']:.0f} s\n")
        print("| image | mask Dice int8 vs fp32 eager | max abs dp | Dice to labels fp32 | int8 |")
        print("|---|---|---|---|---|")
        for x in per:
            lab = ("-", "-") if x["label_dice_fp32"] is None else (f"{x['label_dice_fp32']:.3f}",
                                                                   f"{x['label_dice_int8']:.3f}")
            print(f"| {x['image']} | {x['mask_dice']:.4f} | {x['max_abs_dp']:.3f} | {lab[0]} | {lab[1]} |")
        labelled = [x for x in per if x["label_dice_fp32"] is not None]
        print(f"\nmask Dice vs fp32: min {min(x['mask_dice'] for x in per):.4f}, mean "
              f"{np.mean([x['mask_dice'] for x in per]):.4f} (issue 18's bar: >= 0.995 on every image); mean Dice to "
              f"labels fp32 {np.mean([x['label_dice_fp32'] for x in labelled]):.4f}, int8 "
              f"{np.mean([x['label_dice_int8'] for x in labelled]):.4f}; s / image: eager fp32 "
              f"{a['seconds']['fp32_torch']:.2f}, OpenVINO int8 {a['seconds']['int8_openvino']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
