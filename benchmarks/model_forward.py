"""Forward time and peak memory of MoME versus one expert U-Net, same input, same run.

Each measurement runs in a fresh subprocess. Peak memory: the kernel's peak-RSS mark (VmHWM) is reset
(Linux /proc/self/clear_refs) after the model and input are built, and the printed figure is the peak
RSS during the passes minus the RSS before them (activations and workspace, not the weights). Timing: median of --repeats passes after one warm-up.

    python benchmarks/model_forward.py                       # paper at 64^3, cpu at 64^3
    python benchmarks/model_forward.py --size 128 --presets paper --threads 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, statistics, sys, time
import torch
import mome
preset, which, size, repeats, threads, train = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1"
torch.set_num_threads(threads)
torch.manual_seed(0)
model = mome.create_model(preset)
net = model if which == "mome" else model.experts[0]
del model
net.train(train)
if not train:
    net.set_deep_supervision(False)
x = torch.randn(1, 1, size, size, size)
def step():
    if train:
        out = net(x)
        logits = out.logits if which == "mome" else out
        sum(o.float().mean() for o in logits).backward()
        net.zero_grad(set_to_none=True)
    else:
        with torch.inference_mode():
            net(x)
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])  # KiB
open("/proc/self/clear_refs", "w").write("5")  # reset the peak-RSS mark
base = status("VmRSS:")
step()
times = []
for _ in range(repeats):
    t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
peak = status("VmHWM:")
print(json.dumps({"seconds": statistics.median(times), "peak_mib": (peak - base) / 1024,
                  "params": sum(p.numel() for p in net.parameters())}))
"""


def measure(preset: str, which: str, size: int, repeats: int, threads: int, train: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, preset, which, str(size), str(repeats), str(threads),
                          "1" if train else "0"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["paper", "cpu"])
    ap.add_argument("--size", type=int, default=64, help="cubic input edge in voxels (default 64)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train", action="store_true", help="time forward + backward with deep supervision")
    args = ap.parse_args()
    from mome.utils.provenance import versions

    v = versions()
    mode = "forward+backward (train, deep supervision)" if args.train else "forward (inference, no DS)"
    print(f"# {mode}, input 1x1x{args.size}^3, {args.threads} threads, fp32, CPU: {v['cpu']}, torch {v['torch']}")
    print("| preset | model | params | time (s) | peak memory (MiB) |")
    print("|---|---|---|---|---|")
    for preset in args.presets:
        res = {w: measure(preset, w, args.size, args.repeats, args.threads, args.train) for w in ("unet", "mome")}
        for w, label in (("unet", "one expert U-Net"), ("mome", "MoME (5 experts + gate)")):
            r = res[w]
            print(f"| {preset} | {label} | {r['params']:,} | {r['seconds']:.3f} | {r['peak_mib']:.0f} |")
        t = res["mome"]["seconds"] / res["unet"]["seconds"]
        m = res["mome"]["peak_mib"] / max(res["unet"]["peak_mib"], 1e-9)
        print(f"| {preset} | **MoME / U-Net ratio** | | **{t:.2f}x** | **{m:.2f}x** |")


if __name__ == "__main__":
    main()
