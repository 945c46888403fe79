"""Whole-scan inference time, peak memory and accuracy cost of each optimisation, MoME vs one U-Net.

Every (network, configuration) pair runs in a fresh subprocess that builds the network, predicts the
test images with :class:`mome.inference.Predictor` and reports the median time per image and the peak
memory (the kernel's peak-RSS mark, VmHWM, reset through /proc/self/clear_refs after the network is
built; the figure is peak RSS minus RSS before prediction). Configurations (cumulative ladder):

    fp32            fp32, sliding windows (training patch, else 128^3 paper / 64^3 cpu), overlap 0.5
    fp32-whole      fp32, one window over the whole volume padded to the network divisor
    bf16            + bf16 autocast
    bf16-step       bf16, overlap 0.25 (larger sliding-window steps)
    bf16-whole      bf16, one window over the whole volume padded to the network divisor
    +tcmalloc       bf16-whole with LD_PRELOAD=libtcmalloc_minimal.so.4 (the others run with glibc malloc)
    +channels-last  bf16-whole-tcmalloc in channels_last_3d
    +grouped        bf16-whole-tcmalloc with the five experts as one grouped-convolution network (MoME only)
    +skip           bf16-whole-tcmalloc with gate-guided expert skipping (--skip-threshold; MoME only)
    +top1           bf16-whole-tcmalloc running only the expert with the largest gate share (MoME only;
                    the best case of skipping, whatever the accuracy)
    bf16-tta, bf16-whole-tta   with mirroring TTA (8 passes; not run by default, see --configs)
    fp32-whole-tcmalloc  fp32-whole with tcmalloc (mome predict's default before OpenVINO where bf16 is not native)
    openvino        the network compiled by OpenVINO (mome.inference.backends), fp32, one whole-volume window;
                    its conversion is timed apart ("setup"; cached per model afterwards). glibc malloc: OpenVINO
                    aborts with tcmalloc preloaded
    openvino-bf16   the same with OpenVINO's bf16 inference precision (only where the CPU has bf16 natively)
    openvino-sliding   OpenVINO fp32 over the training-patch sliding windows (one of the faithful mode's 8 passes)
    fp32-faithful, openvino-faithful   nnU-Net-faithful: training-patch windows, overlap 0.5, Gaussian, 8 mirrors
                    (not run by default)

--emulate-avx2 limits PyTorch (ATEN_CPU_CAPABILITY=avx2) and oneDNN, PyTorch's and OpenVINO's copy
(ONEDNN_MAX_CPU_ISA=AVX2; OpenVINO's oneDNN then reports "isa: Intel AVX2" under ONEDNN_VERBOSE=1) to AVX2,
to approximate an AVX2-only CPU on a newer one. It is an approximation: caches, clocks and memory bandwidth
stay those of the machine it runs on.

On CUDA (--device cuda) times include a synchronisation, one warm-up prediction precedes them, and the
peak memory is ``torch.cuda.max_memory_allocated`` (the allocator's peak, not counting its cache).

Accuracy: each configuration's masks against the fp32 reference masks of the same network (--mome-reference:
fp32 sliding windows, or fp32-whole for MoME), and for configurations with a "ref" against eager fp32 with the
same windows (Dice of the arg-max lesion masks, and the largest lesion-probability difference). With random weights
(no --model) masks mean nothing, so this is only an agreement measure; with a trained model folder
(--model DIR) and labelled test cases (--collection), the Dice to the labels of every configuration
is reported as well (mean over cases, and its change from fp32).

    python benchmarks/inference.py                               # paper 160x196x160 + cpu 80x98x80
    python benchmarks/inference.py --quick                       # cpu preset only, fewer configurations
    python benchmarks/inference.py --model runs/mome/final --collection synth_cpu/collection.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CONFIGS: dict[str, dict] = {
    "fp32": dict(options=dict(precision="fp32")),
    "fp32-whole": dict(options=dict(precision="fp32", patch_size="whole")),
    "bf16": dict(options=dict(precision="bf16")),
    "bf16-step": dict(options=dict(precision="bf16", overlap=0.25)),
    "bf16-whole": dict(options=dict(precision="bf16", patch_size="whole"), ref="fp32-whole"),
    "+tcmalloc": dict(options=dict(precision="bf16", patch_size="whole"), tcmalloc=True),
    "+channels-last": dict(options=dict(precision="bf16", patch_size="whole", channels_last=True), tcmalloc=True),
    "+grouped": dict(options=dict(precision="bf16", patch_size="whole", grouped_experts=True), tcmalloc=True,
                     mome_only=True),
    "+skip": dict(options=dict(precision="bf16", patch_size="whole"), tcmalloc=True, mome_only=True),
    "+top1": dict(options=dict(precision="bf16", patch_size="whole", max_experts=1), tcmalloc=True,
                  mome_only=True),
    # the network compiled by OpenVINO (mome.inference.backends; conversion cached, timed apart as setup;
    # glibc malloc: OpenVINO aborts with tcmalloc preloaded, so mome never combines them)
    # ("ref": the eager-PyTorch fp32 configuration with the same windows, compared against as well)
    "openvino": dict(options=dict(precision="fp32", patch_size="whole", backend="openvino"), ref="fp32-whole"),
    "openvino-bf16": dict(options=dict(precision="bf16", patch_size="whole", backend="openvino"),
                          ref="fp32-whole"),
    # fp32 whole volume with tcmalloc: mome predict's default before OpenVINO on a CPU without native bf16
    "fp32-whole-tcmalloc": dict(options=dict(precision="fp32", patch_size="whole"), tcmalloc=True),
    # one pass of OpenVINO over the training-patch windows: 1/8 of the nnU-Net-faithful mode's work
    "openvino-sliding": dict(options=dict(precision="fp32", backend="openvino"), mome_only=True, ref="fp32"),
    # nnU-Net-faithful: windows of the training patch (128^3 paper), overlap 0.5, Gaussian, 8 mirrors
    "fp32-faithful": dict(options=dict(precision="fp32", tta=True), mome_only=True),
    "openvino-faithful": dict(options=dict(precision="fp32", tta=True, backend="openvino"), mome_only=True,
                              ref="fp32-faithful"),
    # test-time augmentation (8 mirrored passes), for GPUs
    "bf16-tta": dict(options=dict(precision="bf16", tta=True)),
    "bf16-whole-tta": dict(options=dict(precision="bf16", patch_size="whole", tta=True), tcmalloc=True),
}
DEFAULT_CONFIGS = [c for c in CONFIGS if "tta" not in c and "faithful" not in c]
QUICK_CONFIGS = ["fp32", "bf16", "bf16-whole", "+tcmalloc", "+grouped", "+skip", "+top1"]
GRID_SPACING = {"paper": 1.0, "cpu": 2.0}  # the MNI box 160x196x160 mm at these spacings


# -- child: one network, one configuration ------------------------------------------------------

def child(spec: dict) -> dict:
    """Build the network, predict every image, save lesion probabilities; return timings and memory."""
    import torch

    import mome
    from mome.inference.predictor import Predictor, default_patch_size

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    record = {}
    if spec.get("model_dir"):
        from mome.weights.store import read_model_record

        net = mome.load_model(spec["model_dir"])
        record = read_model_record(spec["model_dir"])
    else:
        net = mome.create_model(spec["preset"])
    if spec["which"] == "unet":
        net = net.experts[0]
    options = dict(spec["options"])
    patch = record.get("patch_size") or default_patch_size(net)
    options.setdefault("patch_size", patch)
    device = spec.get("device", "cpu")
    t_setup = time.perf_counter()
    predictor = Predictor(net, device=device, spacing_mm=None, gates=False, **options)
    setup_s = time.perf_counter() - t_setup
    images = [np.load(p) for p in spec["images"]]
    cuda = predictor.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda or spec.get("warmup"):
        predictor.predict_array(images[0], spec["spacing"])
        sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        _clear_peak()
        base = _status_kib("VmRSS:")
    times, calls = [], []
    for i, (img, out) in enumerate(zip(images, spec["outputs"])):
        for r in range(spec["repeats"]):
            t0 = time.perf_counter()
            pred = predictor.predict_array(img, spec["spacing"])
            sync()
            times.append(time.perf_counter() - t0)
        np.save(out, pred.lesion_probability.astype(np.float16))
        if "expert_calls" in pred.info:  # mean number of experts run per network call
            calls.append(sum(pred.info["expert_calls"]) / max(1, pred.info["network_calls"]))
    peak_mib = torch.cuda.max_memory_allocated() / 2**20 if cuda else (_status_kib("VmHWM:") - base) / 1024
    return {"seconds": statistics.median(times), "peak_mib": peak_mib, "setup_s": setup_s,
            "backend": predictor.backend_name, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "patch": "whole" if predictor.whole_volume else list(predictor.patch_size),
            "experts_run": float(np.mean(calls)) if calls else None,
            "tcmalloc": "tcmalloc" in os.environ.get("LD_PRELOAD", "")}


def _clear_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS mark (Linux)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_child(spec: dict, tcmalloc: bool, library: str | None) -> dict:
    env = dict(os.environ)
    preload = [p for p in env.get("LD_PRELOAD", "").split(":") if p and "tcmalloc" not in p]
    # On CUDA the host allocator does not touch the GPU work, so the tcmalloc configurations run with
    # whatever allocator the machine has (each row records whether tcmalloc was preloaded).
    if tcmalloc and not (library is None and str(spec.get("device", "cpu")).startswith("cuda")):
        if library is None:
            raise SystemExit("tcmalloc is not installed (apt-get install libtcmalloc-minimal4); "
                             "drop the +tcmalloc configurations with --configs")
        preload.insert(0, library)
    env["LD_PRELOAD"] = ":".join(preload)
    env["MOME_TCMALLOC"] = "0"
    if spec.get("emulate_avx2"):
        env.update(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", DNNL_MAX_CPU_ISA="AVX2")
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise SystemExit(f"configuration failed: {spec['which']} {spec['options']}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- parent: images, runs, comparison, table ----------------------------------------------------

def synthetic_images(preset: str, n: int, folder: Path) -> list[dict]:
    """``n`` test subjects of the synthetic benchmark on the preset's grid (FLAIR, a different
    dataset each), generated in memory; no labels are used (random weights)."""
    from mome.data.synth.subject import synth_subject

    datasets = ["BraTS", "WMH", "ISLES", "MSSEG", "ATLAS"]
    items = []
    for i in range(n):
        ds = datasets[i % len(datasets)]
        subject = synth_subject(ds, "test", i // len(datasets), seed=0, spacing_mm=GRID_SPACING[preset])
        modality = "FLAIR" if "FLAIR" in subject.images else next(iter(subject.images))
        path = folder / f"{preset}_{subject.id}_{modality}.npy"
        np.save(path, subject.images[modality].astype(np.float32))
        items.append({"name": f"{subject.id}_{modality}", "path": str(path), "label": None,
                      "spacing": [GRID_SPACING[preset]] * 3})
    return items


def collection_images(collection: str, n: int, folder: Path) -> list[dict]:
    """The first test case of each task of a collection, up to ``n`` (images in RAS on their grid)."""
    import nibabel as nib

    from mome.data.collection import load_collection
    from mome.inference.geometry import voxel_spacing

    cases = [c for c in load_collection(collection).cases if c.split == "test"]
    chosen, tasks = [], set()
    for c in cases:
        task = (c.dataset, c.modality)
        if task not in tasks:
            tasks.add(task)
            chosen.append(c)
    items = []
    for c in chosen[:n]:
        img = nib.as_closest_canonical(nib.load(str(c.image)))
        lab = nib.as_closest_canonical(nib.load(str(c.label)))
        path = folder / f"{c.id}.npy"
        np.save(path, np.asarray(img.dataobj, dtype=np.float32))
        items.append({"name": c.id, "path": str(path), "label": np.asarray(lab.dataobj) > 0,
                      "spacing": list(voxel_spacing(img.affine))})
    return items


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def compare(items: list[dict], outputs: list[str], ref_outputs: list[str]) -> dict:
    """Agreement with the fp32 reference (mask Dice, max |dp|) and Dice to the labels if any."""
    agree, maxdiff, to_label = [], [], []
    for item, out, ref in zip(items, outputs, ref_outputs):
        p, q = np.load(out).astype(np.float32), np.load(ref).astype(np.float32)
        agree.append(dice(p > 0.5, q > 0.5))
        maxdiff.append(float(np.abs(p - q).max()))
        if item["label"] is not None:
            to_label.append(dice(p > 0.5, item["label"]))
    return {"agreement": float(np.mean(agree)), "max_dp": float(np.max(maxdiff)),
            "dice": float(np.mean(to_label)) if to_label else None}


def grouped_conv_benchmark(threads: int, device: str = "cpu", size: int = 64, channels: int = 32,
                           repeats: int = 5) -> list[str]:
    """Five separate 3x3x3 convolutions (one per expert) vs one grouped convolution (groups=5),
    timed alternately so that load changes hit both alike."""
    import torch

    torch.set_num_threads(threads)
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rows = []
    sep = [torch.nn.Conv3d(channels, channels, 3, padding=1).to(dev) for _ in range(5)]
    grp = torch.nn.Conv3d(5 * channels, 5 * channels, 3, padding=1, groups=5).to(dev)
    xs = [torch.randn(1, channels, size, size, size, device=dev) for _ in range(5)]
    xg = torch.cat(xs, 1)
    for prec in ("fp32", "bf16"):
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=prec == "bf16"):
            fns = {"separate": lambda: [c(x) for c, x in zip(sep, xs)], "grouped": lambda: grp(xg)}
            times: dict[str, list[float]] = {k: [] for k in fns}
            for fn in fns.values():
                fn()
            for _ in range(repeats):
                for name, fn in fns.items():
                    sync()
                    t0 = time.perf_counter()
                    fn()
                    sync()
                    times[name].append(time.perf_counter() - t0)
            res = {k: statistics.median(v) for k, v in times.items()}
        rows.append(f"| {prec} | {res['separate']:.3f} | {res['grouped']:.3f} | "
                    f"{res['grouped'] / res['separate']:.2f}x |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["paper", "cpu"], choices=sorted(GRID_SPACING))
    ap.add_argument("--quick", action="store_true", help="cpu preset only, configurations " + ", ".join(QUICK_CONFIGS))
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), help="configurations to run (fp32 is always run)")
    ap.add_argument("--model", help="a trained model folder (its preset replaces --presets)")
    ap.add_argument("--collection", help="labelled test cases (collection.json) for --model")
    ap.add_argument("--images", type=int, default=None,
                    help="test images per preset (default: 1 paper, 3 cpu, 8 with --collection)")
    ap.add_argument("--skip-threshold", type=float, default=0.05,
                    help="gate share below which +skip does not run an expert (default 0.05)")
    ap.add_argument("--repeats", type=int, default=1, help="predictions per image (the median is reported)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the whole list of configurations this many times, interleaved, and report the "
                         "median time and memory per configuration (robust to load changes on shared machines)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mome-reference", default="fp32", choices=["fp32", "fp32-whole"],
                    help="MoME's reference configuration (speed-up and agreement are against it). fp32 sliding "
                         "windows are the slowest MoME row by far (about 15 min per paper-size scan on 2 cores); "
                         "fp32-whole skips them. The U-Net always runs fp32 sliding windows (the yardstick)")
    ap.add_argument("--emulate-avx2", action="store_true",
                    help="limit PyTorch (ATEN_CPU_CAPABILITY=avx2) and oneDNN (ONEDNN_MAX_CPU_ISA=AVX2) to AVX2 in "
                         "every child, to approximate an AVX2-only CPU on a newer one (README says how far it goes)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--warmup", action="store_true", help="one untimed prediction first (always on CUDA)")
    ap.add_argument("--no-grouped", action="store_true", help="skip the grouped-convolution comparison")
    ap.add_argument("--json", help="also write every figure to this JSON file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    from mome.utils.provenance import versions
    from mome.utils.tcmalloc import find_tcmalloc

    library = find_tcmalloc()
    configs = args.configs or (QUICK_CONFIGS if args.quick else DEFAULT_CONFIGS)
    configs = ["fp32", args.mome_reference] + [c for c in configs if c not in ("fp32", args.mome_reference)]
    configs = list(dict.fromkeys(configs))
    presets = ["cpu"] if args.quick else args.presets
    model_spacing = 1.0
    if args.model:
        from mome.weights.store import read_model_record

        presets = ["model"]
        model_spacing = float((read_model_record(args.model).get("spacing_mm") or [1.0])[0])
    v = versions()
    where = f"{args.device} ({_gpu_name()})" if args.device.startswith("cuda") else f"{args.threads} threads"
    print(f"# whole-scan inference, {where}, CPU: {v['cpu']}, torch {v['torch']}, "
          f"tcmalloc: {library or 'not installed'}"
          + (", AVX2 emulated (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2)" if args.emulate_avx2 else ""))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for preset in presets:
            if args.collection:
                items = collection_images(args.collection, args.images or 8, tmp)
            else:
                grid_preset = preset if preset != "model" else ("cpu" if model_spacing >= 1.5 else "paper")
                items = synthetic_images(grid_preset, args.images or (1 if preset == "paper" else 3), tmp)
            shape = np.load(items[0]["path"]).shape
            label = f"trained model {args.model}" if args.model else f"{preset} preset, random weights"
            print(f"\n## {label}: {len(items)} image(s) of {'x'.join(map(str, shape))} voxels")
            refs, by_key = {}, {}
            for rnd in range(args.rounds):
                for which in ("unet", "mome"):
                    for name in configs:
                        cfg = CONFIGS[name]
                        if which == "unet" and cfg.get("mome_only"):
                            continue
                        if which == "mome" and name == "fp32" and args.mome_reference != "fp32":
                            continue
                        options = dict(cfg["options"])
                        if name == "+skip":
                            options["skip_experts"] = args.skip_threshold
                        outs = [str(tmp / f"{preset}_{which}_{name}_{i}.npy") for i in range(len(items))]
                        spec = {"preset": preset, "model_dir": args.model, "which": which, "options": options,
                                "images": [it["path"] for it in items], "spacing": items[0]["spacing"],
                                "outputs": outs, "threads": args.threads, "repeats": args.repeats,
                                "device": args.device, "warmup": args.warmup, "emulate_avx2": args.emulate_avx2}
                        res = run_child(spec, cfg.get("tcmalloc", False), library)
                        print(f"  round {rnd + 1}: {which} {name}: {res['seconds']:.1f} s", file=sys.stderr,
                              flush=True)
                        if rnd == 0:
                            if name == ("fp32" if which == "unet" else args.mome_reference):
                                refs[which] = outs
                            res.update(compare(items, outs, refs[which]), preset=preset, which=which, config=name,
                                       times=[res["seconds"]], peaks=[res["peak_mib"]])
                            same = by_key.get((which, cfg.get("ref")))
                            if same is not None:  # against eager fp32 with the same windows
                                sw = compare(items, outs, same["outputs"])
                                res.update(same_window_ref=cfg["ref"], same_window_agreement=sw["agreement"],
                                           same_window_max_dp=sw["max_dp"])
                            res["outputs"] = outs
                            by_key[(which, name)] = res
                            results.append(res)
                        else:
                            by_key[(which, name)]["times"].append(res["seconds"])
                            by_key[(which, name)]["peaks"].append(res["peak_mib"])
            for res in by_key.values():
                res["seconds"] = statistics.median(res["times"])
                res["peak_mib"] = statistics.median(res["peaks"])
            print_table([r for r in results if r["preset"] == preset], bool(args.model and args.collection),
                        args.mome_reference)
    if not args.no_grouped:
        size = 128 if args.device.startswith("cuda") else 64
        print(f"\n## batched experts: 5 separate 32->32 convolutions vs one grouped convolution (groups=5), "
              f"{size}^3, median of 5")
        print("| precision | separate (s) | grouped (s) | grouped / separate |\n|---|---|---|---|")
        for row in grouped_conv_benchmark(args.threads, args.device, size):
            print(row)
    if args.json:
        for r in results:
            r.pop("outputs", None)  # temporary files
        Path(args.json).write_text(json.dumps({"versions": v, "results": results}, indent=2, default=str))


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"


def print_table(rows: list[dict], labelled: bool, mome_reference: str = "fp32") -> None:
    """Markdown table: one row per network and configuration, then the MoME / U-Net time ratios."""
    head = "| model | configuration | backend | window | time (s) | speed-up | setup (s) | peak memory (MiB) | " \
           "experts run | mask Dice vs reference | max abs dp | vs eager fp32, same windows: Dice / max abs dp |"
    if labelled:
        head += " Dice to labels | change vs fp32 |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    base = {r["which"]: r for r in rows if r["config"] == ("fp32" if r["which"] == "unet" else mome_reference)}
    print(f"(reference: fp32 sliding windows for the U-Net, {mome_reference} for MoME)")
    for r in rows:
        ref = base[r["which"]]
        experts = "-" if r["which"] == "unet" else (
            "all" if r["experts_run"] is None else f"{r['experts_run']:.1f}")
        line = (f"| {'MoME' if r['which'] == 'mome' else 'one U-Net'} | {r['config']} | "
                f"{r['backend'].split('-')[0]} | "
                f"{'whole' if r['patch'] == 'whole' else 'x'.join(map(str, r['patch']))} | {r['seconds']:.1f} | "
                f"{ref['seconds'] / r['seconds']:.2f}x | {r['setup_s']:.1f} | {r['peak_mib']:.0f} | {experts} | "
                f"{r['agreement']:.4f} | {r['max_dp']:.3f} | "
                + (f"{r['same_window_agreement']:.4f} / {r['same_window_max_dp']:.4f} ({r['same_window_ref']}) |"
                   if "same_window_ref" in r else "- |"))
        if labelled:
            line += f" {r['dice']:.4f} | {r['dice'] - ref['dice']:+.4f} |"
        print(line)
    unet = {r["config"]: r for r in rows if r["which"] == "unet"}
    best_unet = min(unet.values(), key=lambda r: r["seconds"])
    print("\nMoME / one U-Net time ratio, same configuration (mome-only rows: vs the U-Net's fastest):")
    for r in rows:
        if r["which"] == "mome":
            u = unet.get(r["config"], best_unet)
            print(f"- {r['config']}: {r['seconds'] / u['seconds']:.2f}x")
    if "fp32" in unet:
        print("\nMoME / one U-Net with plain fp32 sliding windows (the issue-18 yardstick):")
        for r in rows:
            if r["which"] == "mome":
                print(f"- {r['config']}: {r['seconds'] / unet['fp32']['seconds']:.2f}x")


if __name__ == "__main__":
    main()
