"""OpenVINO fp32 export with OpenVINO's own instance norm (MVN) vs mome's staged one: error and time, one run.

    python benchmarks/openvino_instance_norm.py [--model unet|mome] [--rounds 3] [--json out.json]

A paper-size network (random weights, seed 0) predicts one synthetic 160x192x160 volume in eager PyTorch fp32
(the reference) and through two OpenVINO fp32 conversions of the same weights: ``mvn`` (the network as is, as
mome exported it before issue 18's fix) and ``staged`` (``backends.with_staged_instance_norms``, what mome
exports now). Calls alternate between the two (order swapped every round); reported: the median time, the
largest lesion-probability difference and the mask Dice against the reference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def lesion_probability(out) -> torch.Tensor:
    out = out[0] if isinstance(out, (tuple, list)) else out
    return torch.softmax(out.double(), 1)[:, 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["unet", "mome"], default="unet")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import mome
    from mome.inference import backends
    from mome.utils.provenance import versions

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = mome.create_model("paper")
    net = (net.experts[0] if args.model == "unet" else net).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.zeros(1, 1, 160, 192, 160)
    x[..., 20:140, 20:172, 20:140] = torch.randn(1, 1, 120, 152, 120, generator=g) * 0.5 + 1  # a "head"
    with torch.no_grad():
        t0 = time.perf_counter()
        ref = lesion_probability(net(x))
        eager_s = time.perf_counter() - t0
    staged = backends.with_staged_instance_norms
    nets = {}
    try:
        for name in ("mvn", "staged"):
            backends.with_staged_instance_norms = (lambda m: m) if name == "mvn" else staged
            nets[name] = backends.OpenVINONetwork(net, (128, 128, 128), cache=False, threads=args.threads)
    finally:
        backends.with_staged_instance_norms = staged
    rows = {name: {"seconds": []} for name in nets}
    for r in range(args.rounds):
        for name in (("mvn", "staged") if r % 2 == 0 else ("staged", "mvn")):
            with torch.no_grad():
                t0 = time.perf_counter()
                p = lesion_probability(nets[name](x))
                rows[name]["seconds"].append(time.perf_counter() - t0)
            mask, ref_mask = p > 0.5, ref > 0.5
            rows[name]["max_abs_dp"] = float((p - ref).abs().max())
            rows[name]["mask_dice"] = float(2 * (mask & ref_mask).sum() / max(1, int(mask.sum() + ref_mask.sum())))
    print(f"# {args.model}, paper size, random weights, 160x192x160, {args.threads} threads, "
          f"{torch.backends.cpu.get_cpu_capability()}; eager fp32 {eager_s:.1f} s")
    print("| export | median s | max abs dp vs eager fp32 | mask Dice vs eager fp32 |\n|---|---:|---:|---:|")
    for name, row in rows.items():
        row["median_s"] = statistics.median(row["seconds"])
        print(f"| {name} | {row['median_s']:.1f} | {row['max_abs_dp']:.2e} | {row['mask_dice']:.6f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "threads": args.threads, "rounds": args.rounds, "eager_s": eager_s,
                       "cpu_capability": torch.backends.cpu.get_cpu_capability(), "versions": versions(),
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
