"""Training-step memory and time of MoME (or one U-Net) with and without gradient checkpointing.

One step = forward with deep supervision, the project's curriculum loss (eq. 2, nnU-Net DC+CE on
every level, f = 0.5 so both terms get gradients), backward and an SGD (Nesterov, momentum 0.99)
update. Each configuration runs in a fresh subprocess. Peak memory: on CUDA
``torch.cuda.max_memory_allocated`` over the timed steps; on CPU the peak RSS (VmHWM, reset through
/proc/self/clear_refs after the model, optimizer state and batch exist) minus the RSS before the steps.

    python benchmarks/training_memory.py                                   # CPU: paper, batch 1, 64^3
    python benchmarks/training_memory.py --device cuda --batch 2 --size 128  # the paper's setting
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "fp32": dict(precision="fp32", checkpointing=False),
    "fp32+ckpt": dict(precision="fp32", checkpointing=True),
    "bf16": dict(precision="bf16", checkpointing=False),
    "bf16+ckpt": dict(precision="bf16", checkpointing=True),
}


def child(spec: dict) -> dict:
    """One configuration: build, one warm-up step, ``repeats`` timed steps; time and peak memory."""
    import torch

    import mome
    from mome.training.losses import CurriculumLoss, DeepSupervisedLoss, DiceCELoss

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    device = torch.device(spec["device"])
    model = mome.create_model(spec["preset"])
    if spec["which"] == "unet":
        model = model.experts[0]
    model.set_gradient_checkpointing(spec["checkpointing"])
    model = model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99, nesterov=True, weight_decay=3e-5)
    b, s = spec["batch"], spec["size"]
    x = torch.randn(b, 1, s, s, s, device=device)
    label = (torch.rand(b, 1, s, s, s, device=device) > 0.9).float()
    n_levels = model.config.expert.n_levels() if spec["which"] == "mome" else model.config.n_levels()
    targets = [label if i == 0 else torch.nn.functional.interpolate(label, scale_factor=0.5 ** i, mode="nearest")
               for i in range(n_levels)]
    seg = DeepSupervisedLoss(DiceCELoss(), n_levels)
    curriculum = CurriculumLoss(seg)
    modality = torch.arange(b, device=device) % 5

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec["precision"] == "bf16"):
            if spec["which"] == "mome":
                out = model(x, return_experts=True)
                fused = [o.float() for o in out.logits]
                experts = [[lvl.float() for lvl in e] for e in out.expert_logits]
                loss = curriculum(fused, experts, targets, modality, epoch=1, epochs=4).total  # f = 0.56
            else:
                loss = seg([o.float() for o in model(x)], targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up; allocates the optimizer state
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = 0
    else:
        _clear_peak()
        base = _status_kib("VmRSS:")
    times = []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = (_status_kib("VmHWM:") - base) / 1024
    return {"seconds": statistics.median(times), "peak_mib": peak_mib}


def _clear_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_child(spec: dict) -> dict:
    env = dict(os.environ, MOME_TCMALLOC="0")
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise SystemExit(f"configuration failed: {spec}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--models", nargs="+", default=["mome"], choices=["mome", "unet"])
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, default=64, help="cubic patch edge in voxels")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    from mome.utils.provenance import versions

    v = versions()
    where = f"CUDA ({_gpu_name()})" if args.device.startswith("cuda") else f"CPU {v['cpu']}, {args.threads} threads"
    print(f"# training step ({args.preset} preset, batch {args.batch}, {args.size}^3, deep supervision, "
          f"curriculum loss, SGD), {where}, torch {v['torch']}")
    print("| model | configuration | time per step (s) | peak memory (MiB) | memory vs fp32 |")
    print("|---|---|---|---|---|")
    results = []
    for which in args.models:
        ref = None
        for name in args.configs:
            spec = dict(CONFIGS[name], preset=args.preset, which=which, device=args.device, batch=args.batch,
                        size=args.size, repeats=args.repeats, threads=args.threads)
            res = dict(run_child(spec), model=which, config=name)
            results.append(res)
            ref = ref or res
            label = "MoME" if which == "mome" else "one U-Net"
            print(f"| {label} | {name} | {res['seconds']:.2f} | {res['peak_mib']:.0f} | "
                  f"{res['peak_mib'] / ref['peak_mib']:.2f}x |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"versions": v, "args": vars(args), "results": results}, f, indent=2)


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"


if __name__ == "__main__":
    main()
