"""Is MoME's uncertainty map worth anything? AUROC for wrong voxels and per-scan correlation with Dice.

    python benchmarks/uncertainty.py --collection data/synth_cpu/collection.json --per-task 4 \
        --out benchmarks/results/uncertainty.json [--tta]

For the first N test images of every task (dataset x modality), the model (default: the embedded one,
fp32, one whole-volume window) predicts the mask and the uncertainty map (``--uncertainty``: gate-weighted
expert disagreement; with --tta also mirror disagreement). Reported:

* AUROC of the voxel uncertainty for *wrong* voxels (prediction != reference) against right ones, over the
  brain (non-zero voxels) of every image, pooled; 20,000 brain voxels drawn per image (seeded), so every
  image counts about the same;
* the Spearman correlation, over images with a predicted lesion, of the per-scan uncertainty (mean over
  the predicted lesion) with Dice (a useful per-scan value correlates negatively);
* the same AUROC per modality.

With ``--fused BraTS,MSSEG`` the test subjects of those datasets with several sequences are segmented as
one subject each (``mome predict -i ... -i ...``: weighted late fusion) and the same figures are reported
for the fused uncertainty (the mixture's standard deviation: each sequence's expert spread plus the
disagreement between sequences); the reference is the subject's whole-lesion label (BraTS's T1ce label is the
tumour core, so a BraTS subject's label is taken from another sequence).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import nibabel as nib
import numpy as np

SAMPLES_PER_IMAGE = 20_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collection", type=Path, required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--per-task", type=int, default=4)
    ap.add_argument("--tta", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--fused", default=None, help="datasets whose multi-sequence test subjects are fused")
    args = ap.parse_args()
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    from mome.data.collection import load_collection
    from mome.evaluation.metrics import dice as dice_score
    from mome.inference.predictor import Predictor
    from mome.inference.uncertainty import uncertainty_stats
    from mome.utils.provenance import provenance

    predictor, record = Predictor.from_name(args.model, patch_size="whole", precision="fp32", uncertainty=True,
                                            tta=args.tta, gates=False)
    name = record.get("resolved", {}).get("name") or args.model
    test = load_collection(args.collection).filter(split="test").cases
    chosen = []
    if args.fused:
        from mome.inference.subject import predict_subject

        subjects = defaultdict(list)
        for c in test:
            if c.dataset in args.fused.split(","):
                subjects[c.subject].append(c)
        chosen = [sorted(v, key=lambda c: c.modality) for _, v in sorted(subjects.items()) if len(v) > 1]
    else:
        for task in sorted({c.task for c in test}):
            chosen += [c for c in test if c.task == task][: args.per_task]
    rng = np.random.default_rng(args.seed)
    u_all, wrong_all, by_mod, per_scan = [], [], defaultdict(lambda: ([], [])), []
    t0 = time.perf_counter()
    for case in chosen:
        if args.fused:  # one subject: its sequences fused; the reference from a non-T1ce sequence
            group = case
            result = predict_subject([c.image for c in group], predictor)
            img = nib.load(str(group[0].image))
            pred = _Fused(np.asarray(result.mask.dataobj), np.asarray(result.uncertainty.dataobj))
            label = next(c for c in group if c.modality != "T1ce").label
            cid, modality = group[0].subject, "+".join(c.modality for c in group)
        else:
            img = nib.load(str(case.image))
            pred = predictor.predict_image(img)
            label, cid, modality = case.label, case.id, case.modality
        ref = np.asarray(nib.load(str(label)).dataobj) > 0
        mask = pred.mask > 0
        brain = np.asarray(img.dataobj) != 0
        idx = np.flatnonzero(brain)
        pick = rng.choice(idx, size=min(SAMPLES_PER_IMAGE, idx.size), replace=False)
        u = pred.uncertainty.ravel()[pick]
        wrong = (mask != ref).ravel()[pick]
        u_all.append(u)
        wrong_all.append(wrong)
        by_mod[modality][0].append(u)
        by_mod[modality][1].append(wrong)
        dice = dice_score(mask, ref)
        scan = uncertainty_stats(pred.uncertainty, mask)["uncertainty_scan"]
        per_scan.append({"case": cid, "modality": modality, "dice": dice, "uncertainty_scan": scan})
    secs = time.perf_counter() - t0
    u_all, wrong_all = np.concatenate(u_all), np.concatenate(wrong_all)
    auroc = float(roc_auc_score(wrong_all, u_all))
    per_mod = {m: float(roc_auc_score(np.concatenate(w), np.concatenate(u))) for m, (u, w) in sorted(by_mod.items())
               if np.concatenate(w).any() and not np.concatenate(w).all()}
    scored = [r for r in per_scan if r["uncertainty_scan"] is not None]
    rho = spearmanr([r["uncertainty_scan"] for r in scored], [r["dice"] for r in scored])
    summary = {"model": name, "tta": args.tta, "fused": args.fused, "images": len(chosen), "voxels": int(u_all.size),
               "wrong_fraction": float(wrong_all.mean()), "auroc_wrong_voxels": auroc,
               "auroc_per_modality": per_mod, "spearman_scan_uncertainty_vs_dice": float(rho.statistic),
               "spearman_p": float(rho.pvalue), "images_with_lesion": len(scored), "seconds": secs}
    what = (f"{len(chosen)} fused multi-sequence synthetic test subjects of {args.fused}" if args.fused else
            f"{len(chosen)} synthetic test images ({args.per_task} per task)")
    print(f"# model {name}, {'expert + mirror' if args.tta else 'expert'} disagreement, {what}, {secs:.0f} s")
    print(f"AUROC for wrong voxels: {auroc:.3f} ({u_all.size} brain voxels, {wrong_all.mean():.2%} wrong)")
    print("per modality: " + ", ".join(f"{m} {v:.3f}" for m, v in per_mod.items()))
    print(f"Spearman(per-scan uncertainty, Dice) over {len(scored)} images with a predicted lesion: "
          f"{rho.statistic:.3f} (p = {rho.pvalue:.2g})")
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "per_scan": per_scan, "args": vars(args),
                                        "provenance": provenance(seed=args.seed)}, indent=1, default=str))
        print(f"wrote {args.out}")


class _Fused:
    """The two fields of a prediction the measurement reads, for a fused subject."""

    def __init__(self, mask: np.ndarray, uncertainty: np.ndarray):
        self.mask, self.uncertainty = mask, uncertainty


if __name__ == "__main__":
    main()
