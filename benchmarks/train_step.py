"""Seconds per training step of the training presets, through the real pipeline (``train_system``).

Each measurement trains in a fresh subprocess (tcmalloc can only be preloaded at start-up) for two
epochs on a synthetic 5-modality collection with the preset's volume size, and reports the second
epoch's wall time divided by its iterations: patch sampling, nnU-Net augmentation, forward, backward,
SGD step, plus the per-epoch log and checkpoint (small next to the steps). Systems: ``single`` (one
U-Net step) and ``random-experts`` (one MoME step: 5 experts + gate); any registered system can be
given with ``--systems``. On shared cores use ``--threads 1``: OpenMP threads that wait for a busy
core make 2-thread steps several times slower (measured: MoME 12 s instead of 0.8 s per step).

    python benchmarks/train_step.py                           # tiny and cpu presets, fp32/bf16, tcmalloc on/off
    python benchmarks/train_step.py --presets cpu --threads 2 --iterations 8
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
# volume (voxels) and spacing (mm) of the synthetic benchmark each preset trains on
VOLUMES = {"tiny": ((27, 33, 27), 6.0), "cpu": ((80, 98, 80), 2.0), "paper": ((160, 196, 160), 1.0)}

CHILD = r"""
import csv, json, sys, torch
from mome.training.stages import train_system
collection, out, preset, system, precision, iterations, threads, patch = sys.argv[1:9]
torch.set_num_threads(int(threads))
overrides = {"epochs": 2, "iterations_per_epoch": int(iterations), "precision": precision}
if patch != "preset":
    overrides["patch_size"] = [int(patch)] * 3
train_system(system, collection, out, preset=preset, overrides=overrides, progress=False, overwrite=True,
             log=lambda m: None)
rows = list(csv.DictReader(open(out + "/log.csv")))
print(json.dumps({"seconds_per_step": float(rows[1]["seconds"]) / int(iterations)}))
"""


def make_collection(root: Path, shape, spacing: float, subjects: int = 2) -> Path:
    """Ellipsoid brains with a spherical lesion, 5 modalities per subject (timing only)."""
    import numpy as np

    from mome.data.collection import Case, Collection
    from mome.utils.nifti import save_nifti

    rng = np.random.default_rng(0)
    affine = np.diag([spacing] * 3 + [1.0])
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(np.float32)
    centre = (np.array(shape) - 1) / 2
    brain = (((grid - centre) / (np.array(shape) * 0.45)) ** 2).sum(-1) < 1
    cases = []
    for i in range(subjects):
        lesion = brain & (np.linalg.norm(grid - centre - rng.uniform(-5, 5, 3), axis=-1) < min(shape) / 8)
        label = root / f"s{i}_label.nii.gz"
        save_nifti(lesion.astype(np.uint8), affine, label, overwrite=True)
        for m in ("T1", "T2", "T1ce", "FLAIR", "DWI"):
            img = np.where(brain, 1 + 0.1 * rng.standard_normal(shape) + lesion, 0).astype(np.float32)
            path = root / f"s{i}_{m}.nii.gz"
            save_nifti(img, affine, path, overwrite=True)
            cases.append(Case(f"s{i}_{m}", path, label, m, "DS", "tumour", "train", True, f"s{i}"))
    Collection("timing", cases).save(root / "collection.json")
    return root / "collection.json"


def measure(collection: Path, preset: str, system: str, precision: str, iterations: int, threads: int,
            tcmalloc: bool, workdir: Path, patch: int | None = None) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MOME_TCMALLOC": "0"}
    env.pop("LD_PRELOAD", None)
    if tcmalloc:
        env["LD_PRELOAD"] = TCMALLOC
    out = workdir / f"{preset}_{system}_{precision}_{int(tcmalloc)}_{patch}"
    r = subprocess.run([sys.executable, "-c", CHILD, str(collection), str(out), preset, system, precision,
                        str(iterations), str(threads), "preset" if patch is None else str(patch)], env=env,
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])["seconds_per_step"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny,cpu")
    ap.add_argument("--systems", default="single,random-experts")
    ap.add_argument("--precisions", default="32,bf16-mixed")
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tcmalloc", default="off,on", help="off, on, or both (off,on)")
    ap.add_argument("--patches", default="preset", help="patch edge lengths to try, e.g. 32,48 (default: the preset's)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"# load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; threads {args.threads}")
        print("| preset | patch | batch | network | precision | tcmalloc | s/step |")
        print("|---|---|---|---|---|---|---|")
        for preset in args.presets.split(","):
            from mome.training.config import get_train_config

            cfg = get_train_config(preset, "scratch")
            shape, spacing = VOLUMES[preset]
            folder = tmp / preset
            folder.mkdir()
            collection = make_collection(folder, shape, spacing)
            patches = [None] if args.patches == "preset" else [int(p) for p in args.patches.split(",")]
            for patch in patches:
                for system in args.systems.split(","):
                    for precision in args.precisions.split(","):
                        for tc in args.tcmalloc.split(","):
                            if tc == "on" and not Path(TCMALLOC).is_file():
                                continue
                            s = measure(collection, preset, system, precision, args.iterations, args.threads,
                                        tc == "on", tmp, patch)
                            net = {"single": "U-Net", "random-experts": "MoME"}.get(system, system)
                            edge = cfg.patch_size[0] if patch is None else patch
                            print(f"| {preset} | {edge}^3 | {cfg.batch_size} | {net} | {precision} | {tc} "
                                  f"| {s:.3f} |", flush=True)
        print(f"# load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
