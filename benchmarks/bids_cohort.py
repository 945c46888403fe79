"""``mome bids`` on a synthetic 20-subject BIDS cohort: validator, shards, resuming, group TSV, Dice and time.

    python benchmarks/bids_cohort.py --collection data/synth_cpu/collection.json --work /tmp/bids_cohort \
        --out benchmarks/results/bids_cohort.json

The first N test subjects of the collection (``mome synth``) become a raw BIDS dataset
(:func:`mome.bids.example.collection_to_bids`). Then, as separate ``mome bids`` processes (as a job array
would run them): shard 1/2 and shard 2/2 of the participant level, a rerun of everything (must do nothing),
the group level. Checked and printed: the BIDS validator's errors on the raw and the derivative dataset
(when ``bids-validator-deno`` is installed), that the shards cover every subject exactly once, the rerun's
work, each subject's Dice against the generator's reference (the label of the subject's first sequence), and
the wall time of every step.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def _mome(*args) -> tuple[float, str]:
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "mome.cli.main", *map(str, args)], capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"mome {' '.join(map(str, args))} failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    return time.perf_counter() - t0, run.stdout


def _validate(folder: Path) -> int | None:
    exe = shutil.which("bids-validator-deno")
    if exe is None:
        return None
    run = subprocess.run([exe, "--format", "json", str(folder)], capture_output=True, text=True)
    issues = json.loads(run.stdout)["issues"]["issues"]
    errors = [i for i in issues if i["severity"] == "error"]
    for i in errors:
        print(f"  validator error {i['code']}: {i.get('location')}")
    return len(errors)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collection", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True, help="a new folder for the raw and derivative datasets")
    ap.add_argument("--subjects", type=int, default=20)
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from mome.bids.example import collection_to_bids
    from mome.evaluation.metrics import dice as dice_score
    from mome.data.collection import load_collection
    from mome.utils.provenance import provenance

    raw, deriv = args.work / "bids", args.work / "derivatives"
    labels = collection_to_bids(load_collection(args.collection), raw, n_subjects=args.subjects)
    print(f"raw BIDS dataset: {len(labels)} subjects in {raw}")
    record: dict = {"subjects": len(labels), "validator_errors_raw": _validate(raw)}
    model = ["--model", args.model] if args.model else []
    times = {}
    for k in (1, 2):
        times[f"shard {k}/2"], out = _mome("bids", raw, deriv, "participant", "--shard", f"{k}/2", *model)
        print(out.strip().splitlines()[-1])
    times["rerun (all)"], out = _mome("bids", raw, deriv, "participant", *model)
    record["rerun_summary"] = out.strip().splitlines()[-1]
    times["group"], _ = _mome("bids", raw, deriv, "group")
    sidecars = sorted(deriv.glob("sub-*/anat/*_desc-lesion_mask.json"))
    covered = [p.name.split("_")[0][4:] for p in sidecars]
    record.update(covered_once=sorted(covered) == sorted(labels) and len(set(covered)) == len(covered),
                  validator_errors_derivatives=_validate(deriv), seconds=times)
    references = json.loads((raw / "sourcedata" / "references.json").read_text())
    dice = {}
    for path in sidecars:
        meta = json.loads(path.read_text())
        first = meta["Sources"][0].removeprefix("bids:raw:")
        ref = np.asarray(nib.load(references[first]).dataobj) > 0
        pred = np.asarray(nib.load(str(path.with_name(path.name.replace(".json", ".nii.gz")))).dataobj) > 0
        dice[path.name.split("_")[0]] = {"dice": dice_score(pred, ref),
                                         "sequences": [s["modality"] for s in meta["MomeSettings"]["sequences"]]}
    record["dice"] = dice
    record["mean_dice"] = float(np.mean([d["dice"] for d in dice.values()]))
    print(f"validator errors: raw {record['validator_errors_raw']}, derivatives "
          f"{record['validator_errors_derivatives']} (None: bids-validator-deno not installed)")
    print(f"shards cover every subject exactly once: {record['covered_once']}; rerun: {record['rerun_summary']}")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    print(f"mean Dice over {len(dice)} subjects: {record['mean_dice']:.3f}")
    for name, d in dice.items():
        print(f"  {name}: {d['dice']:.3f} ({'+'.join(d['sequences'])})")
    if args.out:
        args.out.write_text(json.dumps({"result": record, "args": vars(args), "provenance": provenance()},
                                       indent=1, default=str) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
