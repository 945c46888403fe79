"""Fit and measure the learned late fusion (mome.inference.learned_fusion) against the weighted average.

    python benchmarks/learned_fusion.py --collection data/synth_cpu/collection.json --work /tmp/lf \
        --out benchmarks/results/learned_fusion.json [--write-model src/mome/weights/embedded]

1. Every sequence of every multi-sequence subject of the collection is segmented on its own (the model, fp32,
   one whole-volume window); the lesion probabilities are cached in --work (resumable).
2. Fit: on the *training* subjects only, every non-empty subset of a subject's sequences is one example
   (modality dropout); from each example --voxels brain voxels are drawn (seeded) with their reference label
   (BraTS: the whole-tumour label of its non-T1ce sequences). scikit-learn's LogisticRegression.
3. Measure on the *test* subjects: mean Dice of the weighted fusion (the model's per-modality weights) and of
   the learned one, for the full set of sequences and for every subset, against the best single sequence.
With --write-model the fitted parameters are stored as ``fusion_learned`` in that model folder's config.json.
"""

from __future__ import annotations

import argparse
import itertools
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
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--voxels", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--write-model", type=Path, default=None)
    args = ap.parse_args()
    from sklearn.linear_model import LogisticRegression

    from mome.data.collection import load_collection
    from mome.inference.fusion import fuse, modality_weights
    from mome.inference.learned_fusion import apply, features
    from mome.inference.predictor import Predictor
    from mome.utils.provenance import provenance

    predictor, record = Predictor.from_name(args.model, gates=False, patch_size="whole", precision="fp32")
    table = record.get("fusion_weights") or {}
    order = list(predictor.model.modalities) if hasattr(predictor.model, "modalities") else sorted(table)
    coll = load_collection(args.collection)
    subjects = defaultdict(list)
    for c in coll.cases:
        subjects[(c.split, c.subject)].append(c)
    subjects = {k: sorted(v, key=lambda c: c.modality) for k, v in sorted(subjects.items()) if len(v) > 1}
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def load(key, cases):
        path = args.work / f"{key[0]}_{key[1]}.npz"
        if not path.is_file():
            probs = {c.modality: predictor.predict_image(nib.load(str(c.image))).lesion_probability for c in cases}
            label = next(c for c in cases if c.modality != "T1ce").label
            brain = np.asarray(nib.load(str(cases[0].image)).dataobj) != 0
            np.savez_compressed(path, ref=np.asarray(nib.load(str(label)).dataobj) > 0, brain=brain,
                                **{f"p_{m}": p.astype(np.float16) for m, p in probs.items()})
        data = np.load(path)
        probs = {k[2:]: data[k].astype(np.float32) for k in data.files if k.startswith("p_")}
        return probs, data["ref"], data["brain"]

    rng = np.random.default_rng(args.seed)
    xs, ys = [], []
    for key, cases in subjects.items():
        if key[0] != "train":
            continue
        probs, ref, brain = load(key, cases)
        idx = np.flatnonzero(brain)
        mods = list(probs)
        for n in range(1, len(mods) + 1):
            for subset in itertools.combinations(mods, n):
                pick = rng.choice(idx, size=min(args.voxels, idx.size), replace=False)
                feats = features([probs[m].ravel()[pick] for m in subset], list(subset), order)
                xs.append(feats)
                ys.append(ref.ravel()[pick])
    x, y = np.concatenate(xs), np.concatenate(ys)
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
    params = {"modalities": order, "coef": [float(v) for v in clf.coef_[0]], "intercept": float(clf.intercept_[0]),
              "source": "benchmarks/learned_fusion.py: logistic stacking fitted on the cpu synthetic benchmark's "
                        f"multi-sequence training subjects (every subset of their sequences; {len(y)} voxels; "
                        f"seed {args.seed})"}
    print(f"fitted on {len(y)} voxels ({y.mean():.2%} lesion) of {sum(k[0] == 'train' for k in subjects)} "
          f"training subjects: " + ", ".join(f"{m} w {params['coef'][i]:+.2f} c {params['coef'][len(order) + i]:+.2f}"
                                            for i, m in enumerate(order)) + f", b {params['intercept']:+.2f}")
    rows = []
    for key, cases in subjects.items():
        if key[0] != "test":
            continue
        probs, ref, _ = load(key, cases)
        mods = list(probs)
        for n in range(1, len(mods) + 1):
            for subset in itertools.combinations(mods, n):
                ps = [probs[m] for m in subset]
                row = {"subject": key[1], "dataset": cases[0].dataset, "sequences": "+".join(subset),
                       "n": n, "learned": _dice(apply(ps, list(subset), params) > 0.5, ref)}
                if n == 1:
                    row["weighted"] = row["single"] = _dice(ps[0] > 0.5, ref)
                else:
                    row["weighted"] = _dice(fuse(ps, "weighted", modality_weights(list(subset), table)) > 0.5, ref)
                    row["single"] = max(_dice(p > 0.5, ref) for p in ps)  # the oracle best sequence
                rows.append(row)
    secs = time.perf_counter() - t0
    summary = {}
    print("\n| test subjects | sequences | examples | weighted | learned | best single (oracle) |\n|---|---|---:|---:|---:|---:|")
    for dataset in sorted({r["dataset"] for r in rows}):
        for label, chosen in (("all sequences", [r for r in rows if r["dataset"] == dataset and r["n"] == max(
                q["n"] for q in rows if q["dataset"] == dataset)]),
                              ("every subset of 2+", [r for r in rows if r["dataset"] == dataset and r["n"] > 1]),
                              ("one sequence", [r for r in rows if r["dataset"] == dataset and r["n"] == 1])):
            m = {k: float(np.mean([r[k] for r in chosen])) for k in ("weighted", "learned", "single")}
            summary[f"{dataset}: {label}"] = {"examples": len(chosen), **m}
            print(f"| {dataset} | {label} | {len(chosen)} | {m['weighted']:.3f} | {m['learned']:.3f} | {m['single']:.3f} |")
    print(f"\n{secs:.0f} s")
    if args.write_model:
        cfg_path = args.write_model / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["fusion_learned"] = params
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
        print(f"wrote fusion_learned into {cfg_path}")
    if args.out:
        args.out.write_text(json.dumps({"params": params, "summary": summary, "rows": rows, "seconds": secs,
                                        "args": vars(args), "provenance": provenance(seed=args.seed)},
                                       indent=1, default=str) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
