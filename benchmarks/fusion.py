"""Multi-sequence late fusion on the synthetic benchmark's multi-sequence subjects: fused Dice vs each sequence.

    python benchmarks/fusion.py --collection data/synth_cpu/collection.json --datasets BraTS,MSSEG \
        --out benchmarks/results/fusion.json

For every subject of the chosen datasets with two or more sequences in the test split, each sequence is
segmented on its own (the same model, fp32, one whole-volume window) and the lesion probabilities are
fused by every rule of mome.inference.fusion. The reference of a subject is its sequences' shared label
(BraTS's T1ce label is the tumour core: the whole-tumour label of its other sequences is used). The
``weighted`` rule's per-modality weights are the model's mean Dice per modality on the *training* split
of the seen datasets (--weight-cases images per modality, taken from its datasets in turn), never on the
test subjects.
Prints a Markdown table (mean Dice per sequence, per fusion rule, and the margin of each rule over the
best single sequence) and writes a JSON record with the config and versions.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import nibabel as nib
import numpy as np

from mome.evaluation.metrics import dice as _dice


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collection", type=Path, required=True)
    ap.add_argument("--model", default=None, help="model name or folder (default: the embedded model)")
    ap.add_argument("--datasets", default="BraTS,MSSEG")
    ap.add_argument("--weight-cases", type=int, default=8, help="training images per modality for the weights")
    ap.add_argument("--weight-datasets", default=None,
                    help="datasets whose training images give the weights (default: every seen dataset)")
    ap.add_argument("--out", type=Path, default=None, help="JSON record to write")
    args = ap.parse_args()
    from mome.data.collection import load_collection
    from mome.inference.fusion import FUSION_RULES, fuse, modality_weights

    FUSION_RULES = [r for r in FUSION_RULES if r != "learned"]  # noqa: N806 - measured by learned_fusion.py
    from mome.inference.predictor import Predictor
    from mome.utils.provenance import provenance

    predictor, record = Predictor.from_name(args.model, gates=False, patch_size="whole", precision="fp32")
    model_name = record.get("resolved", {}).get("name") or args.model
    datasets = args.datasets.split(",")
    coll = load_collection(args.collection)
    t0 = time.perf_counter()

    def probability(case) -> np.ndarray:
        return predictor.predict_image(nib.load(str(case.image))).lesion_probability

    # per-modality reliability on the training split (never the test subjects)
    per_mod = defaultdict(list)
    weight_datasets = (args.weight_datasets.split(",") if args.weight_datasets else
                       sorted({c.dataset for c in coll.cases if c.seen}))
    train = sorted(coll.filter(split="train").cases, key=lambda c: (c.modality, c.dataset, c.id))
    by_mod = defaultdict(list)
    for case in train:  # the same number from every dataset of a modality, in turn
        if case.dataset in weight_datasets:
            by_mod[case.modality].append(case)
    chosen = []
    for modality, cases in by_mod.items():
        groups = defaultdict(list)
        for c in cases:
            groups[c.dataset].append(c)
        order = [g[i] for i in range(max(len(g) for g in groups.values())) for g in groups.values() if i < len(g)]
        chosen += order[: args.weight_cases]
    for case in chosen:
        ref = np.asarray(nib.load(str(case.label)).dataobj) > 0
        per_mod[case.modality].append(_dice(probability(case) > 0.5, ref))
    table = {m: float(np.mean(v)) for m, v in sorted(per_mod.items())}

    subjects = defaultdict(list)
    for case in coll.filter(split="test").cases:
        if case.dataset in datasets:
            subjects[(case.dataset, case.subject)].append(case)
    rows = []
    for (dataset, subject), cases in sorted(subjects.items()):
        if len(cases) < 2:
            continue
        # the shared label: the one most sequences use (BraTS: whole tumour, not the T1ce core)
        labels = [str(c.label) for c in cases]
        label = max(set(labels), key=labels.count)
        ref = np.asarray(nib.load(label).dataobj) > 0
        probs = {c.modality: probability(c) for c in cases}
        row = {"dataset": dataset, "subject": subject,
               "sequences": {m: _dice(p > 0.5, ref) for m, p in probs.items()}}
        mods = list(probs)
        for rule in FUSION_RULES:
            weights = modality_weights(mods, table) if rule == "weighted" else None
            row[rule] = _dice(fuse([probs[m] for m in mods], rule, weights) > 0.5, ref)
        rows.append(row)
    secs = time.perf_counter() - t0

    summary = {}
    lines = [f"# model: {model_name}; weights (training-split Dice per modality): "
             + ", ".join(f"{m} {v:.3f}" for m, v in table.items()), ""]
    lines += ["| dataset | subjects | " + " | ".join(sorted(table)) + " | best single | "
              + " | ".join(f"fused {r}" for r in FUSION_RULES) + " |",
              "|---|---:|" + "---:|" * (len(table) + 1 + len(FUSION_RULES))]
    present = sorted({m for r in rows for m in r["sequences"]})
    lines[2] = "| dataset | subjects | " + " | ".join(present) + " | best single | " + " | ".join(
        f"fused {r}" for r in FUSION_RULES) + " |"
    lines[3] = "|---|---:|" + "---:|" * (len(present) + 1 + len(FUSION_RULES))
    for dataset in datasets + ["all"]:
        chosen = [r for r in rows if dataset == "all" or r["dataset"] == dataset]
        if not chosen:
            continue
        seq = {m: float(np.mean([r["sequences"][m] for r in chosen if m in r["sequences"]]))
               for m in present if any(m in r["sequences"] for r in chosen)}
        best = max(seq, key=seq.get)
        fused = {rule: float(np.mean([r[rule] for r in chosen])) for rule in FUSION_RULES}
        summary[dataset] = {"subjects": len(chosen), "sequences": seq, "best_single": best, "fused": fused,
                            "margin_over_best_single": {k: v - seq[best] for k, v in fused.items()}}
        lines.append(f"| {dataset} | {len(chosen)} | " + " | ".join(f"{seq.get(m, float('nan')):.3f}" for m in present)
                     + f" | {best} {seq[best]:.3f} | "
                     + " | ".join(f"{fused[r]:.3f} ({fused[r] - seq[best]:+.3f})" for r in FUSION_RULES) + " |")
    print("\n".join(lines))
    print(f"\n{len(rows)} subjects, {secs:.0f} s")
    if args.out:
        out = {"command": "python benchmarks/fusion.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                                                                   vars(args).items() if v is not None),
               "model": model_name, "weights": table, "summary": summary, "subjects": rows, "seconds": secs,
               "provenance": provenance()}
        args.out.write_text(json.dumps(out, indent=1, default=str))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
