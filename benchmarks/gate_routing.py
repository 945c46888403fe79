"""Why does the gate not route by modality? MoME stage 2 trained under controlled changes, routing measured.

    python benchmarks/gate_routing.py --collection bench_cpu/data/collection.json --experts bench_cpu/runs/experts \
        --work /tmp/routing --epochs 8 --measure-run "released, 16 epochs=bench_cpu/runs/mome" \
        --out benchmarks/results/gate_routing.json

Every variant starts from the same stage-1 experts and changes one thing against the released recipe (raw
``identity`` gate, curriculum eq. 2, one learning rate, expert heads loaded, images sampled uniformly):
``softmax`` gate, no curriculum, the gate's learning rate x10, expert heads re-initialised, balanced
(per-task) sampling, the curriculum's shape (linear instead of eq. 2's square) and length (over in half the
epochs); ``--measure-run NAME=RUN`` adds finished runs (e.g. the benchmark's 16-epoch MoME) as
extra rows. For each: the routing matrix (mome.benchmark.analysis.expert_usage: share of |gate x expert
logits| per input modality, Supplementary Fig. I), its *specialisation* (mean share of a modality's own
expert; 1/5 = no routing at all, 1 = perfect routing) and how many modalities send most weight to their own
expert, and the task-level Dice on the same test images. *Over training*, from the run's epoch log (the gate's
raw weight of every expert on the lesion class, per input modality): per epoch, how many experts get their
largest weight from their own modality (0-5; 5 = the gate tells the modalities apart the paper's way) and
the diagonal margin (an expert's weight from its own modality minus its mean weight from the others, over
the mean absolute weight; 0 = the gate's weights do not depend on the input modality). Resumable: a
finished variant's run is reused.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

VARIANTS = {
    "released (identity gate, curriculum)": ({}, {}, {}),
    "softmax gate": ({}, {"gate_activation": "softmax"}, {}),
    "no curriculum": ({"curriculum": False}, {}, {}),
    "gate LR x10": ({"gate_lr_scale": 10.0}, {}, {}),
    "expert heads re-initialised": ({}, {}, {"reinit_expert_heads": True}),
    "balanced sampling (per task)": ({"sampling": "task"}, {}, {}),
    "curriculum linear (power 1)": ({"curriculum_power": 1.0}, {}, {}),
    "curriculum ends halfway (span 0.5)": ({"curriculum_span": 0.5}, {}, {}),
}


def _variant_names(text: str) -> list[str]:
    """``--variants``: names separated by commas outside parentheses (a name may hold one), ``none`` dropped."""
    names = re.split(r",(?![^()]*\))", text)
    names = [n.strip() for n in names if n.strip() and n.strip() != "none"]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    return names


def _measure(run: Path, test, per_task: int):
    from mome.benchmark.analysis import expert_usage
    from mome.data.constants import MODALITIES
    from mome.evaluation.metrics import compute_metrics
    from mome.inference.predictor import Predictor
    from mome.weights.store import load_model, read_model_record

    import nibabel as nib

    model = load_model(run / "final")
    chosen = []
    for task in sorted({c.task for c in test}):
        chosen += [c for c in test if c.task == task][:per_task]
    usage = expert_usage(model, chosen, list(MODALITIES))
    experts = list(model.config.modalities)
    own = [usage[i, experts.index(m)] for i, m in enumerate(MODALITIES) if m in experts and np.isfinite(usage[i]).all()]
    argmax_own = sum(1 for i, m in enumerate(MODALITIES)
                     if m in experts and np.isfinite(usage[i]).all() and int(np.argmax(usage[i])) == experts.index(m))
    predictor = Predictor.from_record(load_model(run / "final"), read_model_record(run / "final"), gates=False,
                                      patch_size="whole", precision="fp32")
    per_task_dice: dict[str, list[float]] = {}
    for case in chosen:
        img = nib.load(str(case.image))
        ref = np.asarray(nib.load(str(case.label)).dataobj) > 0
        m = compute_metrics(predictor.predict_image(img).mask > 0, ref, nib.affines.voxel_sizes(img.affine))
        per_task_dice.setdefault(case.task, []).append(m.dice)
    seen = [np.mean(v) for t, v in per_task_dice.items() if any(c.task == t and c.seen for c in chosen)]
    return {"routing": usage.tolist(), "experts": experts, "inputs": list(MODALITIES),
            "specialisation": float(np.mean(own)), "modalities_to_own_expert": argmax_own,
            "seen_task_dice": float(np.mean(seen)), "images": len(chosen)}


def over_training(run: Path) -> list[dict]:
    """Per epoch of ``run/log.csv``: experts whose largest gate weight comes from their own modality, and
    the diagonal margin (see the module docstring); [] for a run without gate columns."""
    import csv

    log = run / "log.csv"
    if not log.is_file():
        return []
    rows = list(csv.DictReader(log.open()))
    if not rows:
        return []
    experts = [c[len("gate_"):].split("_on_")[0] for c in rows[0] if c.startswith("gate_") and "_on_" in c]
    experts = list(dict.fromkeys(experts))
    out = []
    for row in rows:
        try:  # w[m, e]: expert e's weight on input modality m (nan where no sample of m was drawn)
            w = np.array([[float(row[f"gate_{e}_on_{m}"] or "nan") for e in experts] for m in experts])
        except KeyError:
            return []
        seen = np.isfinite(w).all(axis=1)
        if seen.sum() < 2:
            continue
        ws, idx = w[seen], np.flatnonzero(seen)
        own_top = sum(1 for j, e in enumerate(idx) if int(np.argmax(ws[:, e])) == j)
        margins = [ws[j, e] - np.mean(np.delete(ws[:, e], j)) for j, e in enumerate(idx)]
        scale = float(np.mean(np.abs(ws))) or 1.0
        out.append({"epoch": int(row["epoch"]), "own_top": own_top, "modalities": int(seen.sum()),
                    "margin": float(np.mean(margins)) / scale})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collection", type=Path, required=True)
    ap.add_argument("--experts", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--per-task", type=int, default=3, help="test images per task for routing and Dice")
    ap.add_argument("--variants", default=None,
                    help="comma-separated subset of the variants (default all; none: only --measure-run)")
    ap.add_argument("--measure-run", action="append", default=[], help="NAME=RUN: also measure a finished run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from mome.data.collection import load_collection
    from mome.training.stages import train_system
    from mome.training.systems import SystemOptions
    from mome.utils.provenance import provenance

    coll = load_collection(args.collection)
    test = coll.filter(split="test").cases
    chosen = list(VARIANTS) if args.variants is None else _variant_names(args.variants)
    rows = {}
    for name in chosen:
        overrides, model_overrides, options = VARIANTS[name]
        run = args.work / name.split(" (")[0].replace(" ", "_").replace("/", "_")
        t0 = time.perf_counter()
        if not ((run / "run.json").is_file() and json.loads((run / "run.json").read_text()).get("finished")):
            train_system("mome", coll, run, preset=args.preset,
                         overrides={"epochs": args.epochs, "seed": args.seed, "precision": "32", **overrides},
                         model_overrides=model_overrides or None,
                         options=SystemOptions(experts=str(args.experts), **options), progress=False,
                         log=lambda m: None)
        rows[name] = {**_measure(run, test, args.per_task), "epochs": args.epochs,
                      "seconds": time.perf_counter() - t0, "over_training": over_training(run)}
        _print_row(name, rows[name])
        _write(args, rows, provenance)  # after every row: a stopped study keeps what it measured
    for item in args.measure_run:
        name, _, path = item.partition("=")
        rows[name] = {**_measure(Path(path), test, args.per_task), "over_training": over_training(Path(path))}
        _print_row(name, rows[name])
        _write(args, rows, provenance)
    if args.out:
        print(f"wrote {args.out}")


def _write(args, rows: dict, provenance) -> None:
    if args.out:
        from mome.utils.atomic import write_text_atomic

        record = {"rows": rows, "args": vars(args), "provenance": provenance(seed=args.seed)}
        write_text_atomic(args.out, json.dumps(record, indent=1, default=str) + "\n")


def _print_row(name: str, r: dict) -> None:
    diag = ", ".join(f"{m} {r['routing'][i][r['experts'].index(m)]:.2f}" for i, m in enumerate(r["inputs"])
                     if m in r["experts"])
    traj = r.get("over_training") or []
    course = " -> ".join(f"{t['own_top']}/{t['modalities']} {t['margin']:+.3f}" for t in
                         [traj[0], traj[len(traj) // 2], traj[-1]]) if traj else "-"
    print(f"| {name} | {r['specialisation']:.3f} | {r['modalities_to_own_expert']}/5 | {r['seen_task_dice']:.3f} | "
          f"{diag} | {course} |", flush=True)


if __name__ == "__main__":
    main()
