"""The model shipped inside the package: ``mome-cpu-synth``, the default of ``mome predict``.

It is the ``cpu``-preset MoME (5 experts of 8..128 features + hierarchical gate, 8.5 M parameters)
trained with mome's own pipeline (stage 1 experts, then stage 2 with the curriculum; the exact recipe is in
``embedded/config.json``) on the ``cpu`` synthetic benchmark (MNI152 anatomy at 2 mm, no real patient data).
It exists so that a fresh, offline install can segment a scan at once; it is not a clinical model and was
never trained on real MRI: results on real scans are a smoke test, not a measurement of MoME.
"""

from __future__ import annotations

from pathlib import Path

from mome.weights.registry import PretrainedModel, register_pretrained

EMBEDDED_NAME = "mome-cpu-synth"
EMBEDDED_FOLDER = Path(__file__).parent / "embedded"

EMBEDDED = register_pretrained(PretrainedModel(
    name=EMBEDDED_NAME,
    description="cpu-preset MoME trained on mome's synthetic benchmark (2 mm MNI space); default model",
    training="mome train experts --preset cpu --precision 32 --epochs 8 (25 iterations/epoch, 32^3 patches, "
             "batch 2, LR 1e-2, seed 0), then mome train mome --preset cpu --precision 32 --epochs 6 (LR 1e-3, "
             "curriculum eq. 2), 2 CPU cores; weights of the last epoch (also the best by training-loss EMA)",
    data="synthetic benchmark only: mome synth --preset cpu --seed 0 with the generator's first version (commit 3138a15), seen datasets "
         "only (BraTS-, ATLAS-, ISLES-, WMH-, MSSEG-, OASIS-like), MNI152 anatomy from nilearn; no real scans",
    licence="Apache-2.0",
    source="embedded in the mome package",
    folder=EMBEDDED_FOLDER,
    default=True,
    how_to_get="reinstall mome (the weights ship inside the package), or pass --model DIR",
    # measured: README, "Domain-randomised training data" table (benchmarks/embedded_model.py); keep in step
    notice="mome-cpu-synth was trained on synthetic data only and does not segment real scans reliably: on a real "
           "MS case (1.3 ml of lesion) it predicted 66-224 ml at Dice <= 0.013 on T1, T1ce, T2 and FLAIR, and "
           "294 ml on a healthy brain (README, issue 13); a demonstration, not a measurement",
))
