"""Where the tissues land after mome's z-score: a real case, the domain-randomised generator, the benchmark.

The network sees intensities z-scored inside the brain (:func:`mome.data.intensity.zscore_in_brain`). If
white matter, grey matter and CSF land at different z levels in the training images than in real scans,
the network meets a contrast it never saw. This script prints, per modality, the mode and the 5/50/95th
percentiles of the brain's z-scores and the median z over white matter, grey matter and CSF, with tissue
masks from nilearn's MNI152 probability maps (WM > 0.7, GM > 0.6, CSF: brain with both < 0.15). Every
image is z-scored on its own grid and then resampled onto mome's 2 mm MNI box. The real case and the
generated volumes lie in MNI space, so the template's tissue masks fit them approximately (a patient's
anatomy differs from the average brain: the medians mix tissues at the borders).

    python benchmarks/intensity_profiles.py --real ../shared/data/real/ms_patient07 \
        --label-maps ../shared/data/label_maps/synthseg --lesion-masks ../shared/data/lesion_masks \
        --collection <cpu synth>/collection.json [--samples 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

from mome.data.constants import MODALITIES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", type=Path, default=None, help="folder with t1/t1ce/t2/flair.nii.gz in MNI space")
    ap.add_argument("--label-maps", type=Path, default=None, help="SynthSeg label maps (the generator)")
    ap.add_argument("--lesion-masks", type=Path, default=None, help="lesion masks (the generator)")
    ap.add_argument("--collection", type=Path, default=None, help="a synthetic benchmark collection")
    ap.add_argument("--samples", type=int, default=3, help="generated volumes / benchmark images per modality")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    from nilearn import datasets

    from mome.data.intensity import zscore_in_brain
    from mome.data.mni import mni_grid

    shape, box = mni_grid(2.0)
    reference = nib.Nifti1Image(np.zeros(shape, np.float32), box)

    def on_box(img, interpolation="continuous"):
        from nilearn.image import resample_to_img

        out = resample_to_img(img, reference, interpolation=interpolation, force_resample=True, copy_header=True)
        return np.asarray(out.dataobj)

    gm = on_box(datasets.load_mni152_gm_template(resolution=1))
    wm = on_box(datasets.load_mni152_wm_template(resolution=1))
    brain_template = on_box(datasets.load_mni152_brain_mask(resolution=1), "nearest") > 0
    tissues = {"wm": wm > 0.7, "gm": gm > 0.6, "csf": brain_template & (gm < 0.15) & (wm < 0.15)}

    def row(name: str, z: np.ndarray, brain: np.ndarray) -> str:
        values = z[brain]
        hist, edges = np.histogram(values, bins=80, range=(-4, 4))
        mode = (edges[hist.argmax()] + edges[hist.argmax() + 1]) / 2
        p5, p50, p95 = np.percentile(values, [5, 50, 95])
        med = {k: float(np.median(z[m & brain])) for k, m in tissues.items()}
        return (f"| {name} | {mode:+.2f} | {p5:+.2f} / {p50:+.2f} / {p95:+.2f} | {med['wm']:+.2f} | "
                f"{med['gm']:+.2f} | {med['csf']:+.2f} |")

    def file_row(name: str, img) -> str:
        arr = np.asarray(img.dataobj, dtype=np.float32)
        z = on_box(nib.Nifti1Image(zscore_in_brain(arr), img.affine))
        brain = on_box(nib.Nifti1Image((arr != 0).astype(np.float32), img.affine), "nearest") > 0
        return row(name, z, brain)

    print("| image | mode | p5 / p50 / p95 | WM median | GM median | CSF median |\n|---|---|---|---|---|---|")
    if args.real:
        for mod in ("T1", "T1ce", "T2", "FLAIR"):
            path = next(args.real.glob(f"{mod.lower()}.nii*"), None)
            if path is not None:
                print(file_row(f"real {args.real.name} {mod}", nib.load(str(path))))
    print(file_row("nilearn MNI152 T1 template", datasets.load_mni152_template(resolution=1)))
    if args.label_maps:
        from mome.training.config import TrainConfig
        from mome.training.datamodule import build_generator

        cfg = TrainConfig(label_maps=str(args.label_maps), spacing_mm=[2.0, 2.0, 2.0],
                          lesion_masks=None if args.lesion_masks is None else str(args.lesion_masks))
        generator = build_generator(cfg, list(MODALITIES))
        rng = np.random.default_rng(args.seed)
        for mod in MODALITIES:
            for _ in range(args.samples):
                case = generator.sample(rng, mod)
                print(row(f"generated {mod} ({case.case.lesion_type})", case.image, case.label >= 0))
    if args.collection:
        from mome.data.collection import load_collection

        counts: dict[str, int] = {}
        for case in load_collection(args.collection).cases:
            if case.split != "test" or counts.get(case.modality, 0) >= args.samples:
                continue
            counts[case.modality] = counts.get(case.modality, 0) + 1
            print(file_row(f"benchmark {case.dataset}/{case.modality}", nib.load(str(case.image))))


if __name__ == "__main__":
    main()
