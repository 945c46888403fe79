"""Dice of a model (default: the embedded mome-cpu-synth) on synthetic test tasks and on a real MS case.

    python benchmarks/embedded_model.py --collection data/synth_cpu/collection.json --per-task 2 \
        --real ../shared/data/real/ms_patient07 --template --healthy 3 --label-maps ../shared/data/label_maps/synthseg

Predicts the first N test images of every task (dataset x modality) of the collection, evaluates them with
mome.evaluation, and predicts each of the real case's modalities (t1, t1ce, t2, flair) against its
lesion.nii.gz. Prints Markdown tables. Inference: fp32 (the reference precision; mome predict's
default `auto` uses bf16 where the CPU has it) and one whole-volume window (mome predict's default);
--sliding-window uses the training patch instead.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model name or folder (default: the embedded model)")
    ap.add_argument("--collection", type=Path, default=None)
    ap.add_argument("--per-task", type=int, default=2)
    ap.add_argument("--real", type=Path, default=None, help="folder with t1/t1ce/t2/flair + lesion.nii.gz")
    ap.add_argument("--tcga", type=Path, default=None,
                    help="folder of raw scans without a mask (flair/t2/t1/t1ce.nii.gz): each is preprocessed to MNI, "
                         "predicted there, and the FLAIR and T2 masks compared (Dice in MNI space) with volumes")
    ap.add_argument("--template", action="store_true",
                    help="also predict nilearn's healthy MNI152 T1 template (1 mm, skull-stripped): false positives")
    ap.add_argument("--healthy", type=int, default=0,
                    help="also predict N lesion-free volumes per modality of the domain-randomised generator "
                         "(real SynthSeg anatomies, 2 mm; needs --label-maps): false positives on healthy anatomy")
    ap.add_argument("--label-maps", type=Path, default=None, help="SynthSeg label maps for --healthy")
    ap.add_argument("--healthy-random-contrast", type=float, default=0.0,
                    help="share of --healthy volumes with fully random label intensities (default 0: every one "
                         "with its modality's tissue prior, as real scans; training draws 0.15)")
    ap.add_argument("--sliding-window", action="store_true",
                    help="sliding windows of the training patch instead of mome predict's whole-volume default")
    args = ap.parse_args()
    from mome.data.collection import Collection, load_collection
    from mome.evaluation.evaluate import evaluate_predictions
    from mome.evaluation.metrics import compute_metrics
    from mome.inference.predictor import Predictor
    from mome.utils.nifti import save_nifti

    predictor, record = Predictor.from_name(args.model, gates=False,
                                            patch_size=None if args.sliding_window else "whole")
    print(f"# model: {record.get('resolved', {}).get('name') or args.model}")
    if args.collection:
        coll = load_collection(args.collection)
        test = coll.filter(split="test").cases
        chosen = []
        for task in sorted({c.task for c in test}):
            chosen += [c for c in test if c.task == task][: args.per_task]
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            for case in chosen:
                img = nib.load(str(case.image))
                save_nifti(predictor.predict_image(img).mask, img.affine, Path(tmp) / f"{case.id}.nii.gz")
            secs = (time.perf_counter() - t0) / len(chosen)
            res = evaluate_predictions(tmp, Collection(coll.name, chosen), split="test", name="embedded")
        print(f"\n{len(chosen)} synthetic test images ({args.per_task} per task), {secs:.1f} s per image\n")
        print("| task | seen | Dice (mean) |\n|---|---|---|")
        for t in res.tasks():
            print(f"| {t.task} | {'seen' if t.seen else 'unseen'} | {res.task_means('dice')[t.task]:.3f} |")
        for seen, label in ((True, "seen"), (False, "unseen")):
            print(f"| **{label}: image / task / dataset level** | | "
                  f"{res.level('dice', 'image', seen):.3f} / {res.level('dice', 'task', seen):.3f} / "
                  f"{res.level('dice', 'dataset', seen):.3f} |")
    if args.real:
        ref_img = nib.load(str(args.real / "lesion.nii.gz"))
        ref = np.asarray(ref_img.dataobj) > 0
        spacing = nib.affines.voxel_sizes(ref_img.affine)
        print(f"\nreal case {args.real.name}: lesion {ref.sum() * np.prod(spacing) / 1000:.1f} ml\n")
        print("What the false positives look like: the image's intensity as a z-score inside the brain (non-zero "
              "voxels) over the true lesion and over the false-positive voxels, and the largest false-positive "
              "component.\n")
        print("| modality | Dice | lesion F1 | predicted ml | lesion z | false-positive z | largest FP component ml |"
              "\n|---|---|---|---|---|---|---|")
        for mod, name in (("t1", "T1"), ("t1ce", "T1ce"), ("t2", "T2"), ("flair", "FLAIR")):
            path = next(args.real.glob(f"{mod}.nii*"), None)
            if path is None:
                continue
            img = nib.load(str(path))
            pred = predictor.predict_image(img)
            m = compute_metrics(pred.mask > 0, ref, spacing)
            print(f"| {name} | {m.dice:.3f} | {m.lesion_f1:.3f} | {m.vol_pred_ml:.1f} | "
                  f"{_false_positives(np.asarray(img.dataobj, np.float32), pred.mask > 0, ref, spacing)} |")
    if args.template:
        from nilearn import datasets

        tpl = datasets.load_mni152_template(resolution=1)
        img = nib.Nifti1Image(np.asarray(tpl.get_fdata(), np.float32), tpl.affine)
        mask = predictor.predict_image(img).mask > 0
        ml = mask.sum() * np.prod(nib.affines.voxel_sizes(img.affine)) / 1000
        from scipy import ndimage

        print(f"\nhealthy MNI152 template (nilearn, 1 mm): {ml:.2f} ml predicted lesion in "
              f"{ndimage.label(mask, np.ones((3, 3, 3)))[1]} component(s)")
    if args.healthy:
        from mome.data.domain.generator import TISSUE_PRIORS, DomainGenerator, GeneratorConfig
        from mome.data.domain.label_maps import load_label_maps, on_spacing
        from mome.data.domain.lesion_bank import LesionBank
        from mome.data.mni import mni_grid

        if args.label_maps is None:
            ap.error("--healthy needs --label-maps")
        shape = mni_grid(2.0)[0]
        gen = DomainGenerator([on_spacing(m.labels, 2.0) for m in load_label_maps(args.label_maps, 1.0)],
                              LesionBank(tuple(shape)), spacing_mm=2.0,
                              config=GeneratorConfig(p_no_lesion=1.0, p_random_contrast=args.healthy_random_contrast))
        print(f"\nlesion-free generated volumes (real anatomies, 2 mm; {args.healthy} per modality, seeds 0..; "
              f"random contrast share {args.healthy_random_contrast})\n")
        print("| modality | predicted ml (mean) | max |\n|---|---|---|")
        own = record.get("modalities") or list(TISSUE_PRIORS)
        for mod in [m for m in TISSUE_PRIORS if len(own) != 1 or m in own]:  # an expert: its own modality only
            mls = []
            for seed in range(args.healthy):
                case = gen.sample(np.random.default_rng(10_000 + seed), mod)
                mask = predictor.predict_array(case.image, (2.0, 2.0, 2.0)).mask > 0
                mls.append(mask.sum() * 8.0 / 1000)
            print(f"| {mod} | {np.mean(mls):.1f} | {np.max(mls):.1f} |")
    if args.tcga:
        from mome.data.preprocess import preprocess

        masks = {}
        print(f"\nraw case {args.tcga.name} (--preprocess; no reference mask)\n")
        print("| modality | predicted ml (MNI) | registration MI | registration NCC | attempts |\n"
              "|---|---|---|---|---|")
        with tempfile.TemporaryDirectory() as tmp:
            for mod in ("flair", "t2", "t1", "t1ce"):
                path = next(args.tcga.glob(f"{mod}.nii*"), None)
                if path is None:
                    continue
                prep = preprocess(path, Path(tmp) / mod)
                brain = np.asarray(nib.load(str(prep.brain_mask_path)).dataobj) > 0
                masks[mod] = predictor.predict_image(nib.load(str(prep.image_path)), brain_mask=brain).mask > 0
                attempts = json.loads(prep.record_path.read_text())["registration"]["attempts"]
                print(f"| {mod} | {masks[mod].sum() / 1000:.1f} | {prep.mi_after:.3f} | {prep.ncc_after:.2f} | "
                      f"{attempts} |")
        if "flair" in masks and "t2" in masks:
            a, b = masks["flair"], masks["t2"]
            dice = 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)
            print(f"\nFLAIR vs T2 mask agreement in MNI space: Dice {dice:.3f}")


def _false_positives(image: np.ndarray, mask: np.ndarray, ref: np.ndarray, spacing) -> str:
    """'lesion z | false-positive z | largest false-positive component (ml)' as three table cells."""
    from scipy import ndimage

    from mome.data.intensity import zscore_in_brain

    z = zscore_in_brain(image)  # the z-score the network is fed (non-zero voxels = brain)
    fp = mask & ~ref
    components, _ = ndimage.label(fp, np.ones((3, 3, 3)))
    largest = float(np.max(np.bincount(components.ravel())[1:], initial=0)) * float(np.prod(spacing)) / 1000
    fp_z = f"{z[fp].mean():.2f}" if fp.any() else "-"
    return f"{z[ref].mean():.2f} | {fp_z} | {largest:.1f}"


if __name__ == "__main__":
    main()
