"""Quality-control flags for a prediction: facts that say a result may be wrong, each with one warning line.

Checked (thresholds with their reasons):

* **modality**: the gate's implicit modality (the expert with the largest weight share) differs from
  the one the file name declares (BIDS suffix or mome's names, :func:`mome.inference.fusion.declared_modality`),
  and that expert has a clear share (at least 40%, twice an even share among five experts): either the
  file is misnamed or the model reads the image as another contrast. A gate without a clear favourite
  says nothing about the modality (the embedded model's gate does not route by modality: README).
* **registration** (``--preprocess``): mutual information with the template after registration below
  0.045. On the four raw TCGA scans in ``../shared/data`` correct registrations gave 0.052-0.144 (FLAIR,
  T2, T1ce, T1) and wrong optima 0.032-0.036 (``mome.data.registration``). Not NCC: the template is a
  T1, and a correct T2 correlates negatively with it. Records without MI (older ``mome preprocess``
  folders) fall back to NCC below 0.2 (correct T1 registrations 0.22-0.33, wrong 0.06-0.17).
* **volume**: total lesion volume above 300 ml (a third of a brain; larger than the largest gliomas of
  BraTS, about 250 ml with oedema) or a mask touching more than 25% of the brain.
* **outside the brain**: more than 5% of the lesion voxels outside the brain mask (the template mask
  with ``--preprocess``, else the image's non-zero voxels).
"""

from __future__ import annotations

import numpy as np

MIN_NCC = 0.2
MIN_MI = 0.045
MIN_SHARE = 0.4
MAX_VOLUME_ML = 300.0
MAX_BRAIN_FRACTION = 0.25
MAX_OUTSIDE_FRACTION = 0.05


def qc_flags(stats: dict, mask: np.ndarray, brain: np.ndarray | None, declared: str | None = None,
             registration: dict | None = None) -> dict:
    """The ``qc`` entry of the stats JSON: ``{"declared_modality", "implicit_modality", "warnings": [...]}``."""
    warnings = []
    implicit = stats.get("implicit_modality")
    share = (stats.get("expert_weight_share") or {}).get(implicit)
    if declared and implicit and declared != implicit and share is not None and share >= MIN_SHARE:
        warnings.append(f"modality: the file name says {declared} but the gate favours the {implicit} expert "
                        f"({share:.0%} of the weight); check the file or expect a less reliable mask")
    if registration and not registration.get("skipped"):
        if registration.get("mi_after") is not None:
            mi = float(registration["mi_after"])
            if mi < MIN_MI:
                warnings.append(f"registration: mutual information with the MNI template {mi:.3f} < {MIN_MI} "
                                "(correct registrations measured 0.052-0.144); inspect the preview, the mask may "
                                "be misplaced")
        elif registration.get("ncc_after") is not None and float(registration["ncc_after"]) < MIN_NCC:
            warnings.append(f"registration: NCC with the MNI template {float(registration['ncc_after']):.2f} < "
                            f"{MIN_NCC} (correct T1 registrations measured 0.22-0.33); inspect the preview, the "
                            "mask may be misplaced")
    volume = float(stats.get("lesion_volume_ml", 0.0))
    lesion = np.asarray(mask) > 0
    brain_voxels = int(np.count_nonzero(brain)) if brain is not None else 0
    if volume > MAX_VOLUME_ML:
        warnings.append(f"volume: {volume:.0f} ml of lesion (> {MAX_VOLUME_ML:.0f} ml) is implausible")
    elif brain_voxels and lesion.sum() > MAX_BRAIN_FRACTION * brain_voxels:
        warnings.append(f"volume: the lesion covers {lesion.sum() / brain_voxels:.0%} of the brain "
                        f"(> {MAX_BRAIN_FRACTION:.0%}); implausible")
    if brain is not None and lesion.any():
        outside = float(np.count_nonzero(lesion & ~np.asarray(brain, dtype=bool))) / float(lesion.sum())
        if outside > MAX_OUTSIDE_FRACTION:
            warnings.append(f"outside the brain: {outside:.0%} of the lesion voxels lie outside the brain mask "
                            f"(> {MAX_OUTSIDE_FRACTION:.0%})")
    return {"declared_modality": declared, "implicit_modality": implicit, "warnings": warnings}
