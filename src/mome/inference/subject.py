"""One subject's sequences in one call: each segmented by the same model, then fused (late fusion).

``mome predict -i t1.nii.gz -i flair.nii.gz -o mask.nii.gz``. Without ``--preprocess`` the sequences must
be co-registered on one grid (same shape and affine) and the mask is on that grid; with ``--preprocess``
each is registered to MNI152 on its own, the probabilities are fused there and the mask is mapped to the
first sequence's native grid. The fusion rule and its measured default are :mod:`mome.inference.fusion`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mome.errors import ConfigError, InputError
from mome.inference.fusion import FUSION_RULES, declared_modality, fuse, fused_spread, modality_weights
from mome.inference.outputs import gate_stats, image_like, lesion_stats
from mome.inference.qc import qc_flags

# the rule used when none is asked for (benchmarks/fusion.py, README: the measurement behind it)
DEFAULT_RULE = "weighted"
_SUBJECT = re.compile(r"(?:^|_)sub-([a-zA-Z0-9]+)")


def check_subject(paths: Sequence[str | os.PathLike]) -> None:
    """Refuse a file given twice, and sequences whose BIDS names declare different subjects (``sub-01_...`` with
    ``sub-02_...``)."""
    if len({Path(p).resolve() for p in paths}) != len(paths):
        raise InputError("the same file was given twice as a sequence")
    subjects = {m.group(1) for p in paths for m in [_SUBJECT.search(Path(p).name)] if m}
    if len(subjects) > 1:
        raise InputError(f"the sequences belong to different subjects ({', '.join(sorted(subjects))}); give one "
                         "subject's sequences per call")


def check_same_grid(images: Sequence, paths: Sequence) -> None:
    """Refuse sequences that are not on one voxel grid (without ``--preprocess`` they are fused voxel by voxel)."""
    first = images[0]
    for img, path in zip(images[1:], paths[1:]):
        if tuple(img.shape[:3]) != tuple(first.shape[:3]) or not np.allclose(img.affine, first.affine, atol=1e-3):
            raise InputError(f"{path} is not on the grid of {paths[0]} (shape {tuple(img.shape[:3])} vs "
                             f"{tuple(first.shape[:3])} or another affine); co-register the sequences or pass "
                             "--preprocess")


def predict_subject(paths: Sequence[str | os.PathLike], model=None, *, rule: str | None = None,
                    preprocess: bool = False, registration: str = "auto", **options):
    """Segment one subject from several sequences; returns a :class:`~mome.inference.api.PredictionResult`.

    With ``uncertainty=True`` the result's ``uncertainty`` is the fused map's
    (:func:`~mome.inference.fusion.fused_spread`) and the stats get its per-lesion and per-scan means.
    The stats JSON gets ``sequences`` (per sequence: input, declared and implicit modality, fusion weight,
    its own lesion volume) and ``fusion`` (rule, weights and where they come from); ``qc`` warns about
    each sequence whose name and gate disagree and each poor registration.
    """
    from mome.inference.api import PredictionResult, load_input, make_predictor

    rule = rule or DEFAULT_RULE
    if rule not in FUSION_RULES:
        raise ConfigError(f"--fusion {rule!r}; use one of {', '.join(FUSION_RULES)}")
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise ConfigError("a subject fusion needs at least two sequences")
    check_subject(paths)
    loaded = [load_input(p) for p in paths]
    images = [img for img, _, _ in loaded]
    if not preprocess:
        check_same_grid(images, paths)
    options.setdefault("patch_size", "whole")
    options.setdefault("precision", "auto")
    predictor, record = make_predictor(model, **options)
    if getattr(predictor, "n_clicks", None):
        raise ConfigError("interactive models (SAM-Med3D) segment one image from its reference; no fusion")
    table = record.get("fusion_weights") or {}
    if rule == "weighted" and not table:
        rule = "mean"  # no measured reliability for this model: every sequence counts the same
    learned = None
    if rule == "learned":
        from mome.inference.learned_fusion import check_params

        learned = check_params(record.get("fusion_learned"))
    if preprocess:
        sequences, weights, fused, spread, brain, records, preds = _preprocessed(predictor, images, paths,
                                                                                 registration, rule, table, learned)
    else:
        preds = [predictor.predict_image(img) for img in images]
        regions = [d != 0 for _, d, _ in loaded]
        sequences = [_describe(path, pred, region, img.affine)
                     for path, pred, region, img in zip(paths, preds, regions, images)]
        weights = _weights(sequences, rule, table)
        fused = _fuse(preds, sequences, rule, weights, learned)
        spread = _spread(preds, rule, weights)
        brain, records = np.any(regions, axis=0), [None] * len(paths)
    first = images[0]
    mask = (fused > 0.5).astype(np.uint8)
    stats = lesion_stats(mask, first.affine, brain_mask=brain)
    stats.update(input=[str(p) for p in paths], model=(record.get("resolved") or {}).get("name"),
                 shape=[int(s) for s in first.shape[:3]], preprocessed=bool(preprocess), sequences=sequences,
                 fusion={"rule": rule, "weights": weights,
                         "weights_from": record.get("fusion_weights_source") if rule == "weighted" else
                         (learned or {}).get("source")})
    qc = qc_flags(stats, mask, brain)
    for seq in sequences:
        qc["warnings"] += [f"{Path(seq['input']).name}: {w}" for w in
                           qc_flags(seq, np.zeros(1), None, seq["declared_modality"])["warnings"]]
    for rec, path in zip(records, paths):
        if rec:
            qc["warnings"] += [f"{path.name}: {w}" for w in
                               qc_flags({}, np.zeros(1), None, None, rec["registration"])["warnings"]]
    stats["qc"] = qc
    if spread is not None:
        from mome.inference.uncertainty import uncertainty_stats

        stats.update(uncertainty_stats(spread, mask))
    return PredictionResult(mask=image_like(mask, first, np.uint8, "mome fused lesion mask"),
                            probabilities=image_like(fused.astype(np.float32), first, np.float32,
                                                     "mome fused lesion probability"),
                            stats=stats, image=first, prediction=preds[0],
                            uncertainty=None if spread is None else image_like(spread, first, np.float32,
                                                                               "mome fused uncertainty"))


def _fuse(preds, sequences: list[dict], rule: str, weights, learned: dict | None) -> np.ndarray:
    probabilities = [p.lesion_probability for p in preds]
    if rule == "learned":
        from mome.inference.learned_fusion import apply

        return apply(probabilities, [s["modality_used"] for s in sequences], learned)
    return fuse(probabilities, rule, weights)


def _spread(preds, rule: str, weights) -> np.ndarray | None:
    """The fused uncertainty (:func:`~mome.inference.fusion.fused_spread`) when the predictor computed the
    sequences' own, else None."""
    if any(p.uncertainty is None for p in preds):
        return None
    return fused_spread([p.lesion_probability for p in preds], [p.uncertainty for p in preds], rule, weights)


def _describe(path: Path, pred, region: np.ndarray, affine: np.ndarray) -> dict:
    """One sequence's entry of the stats: modalities (declared, implicit, used), its own lesion volume."""
    seq = {"input": str(path), "declared_modality": declared_modality(path)}
    if pred.gates is not None:
        seq.update(gate_stats(pred.gates, pred.expert_names, pred.gate_activation, region, pred.mask))
    seq["lesion_volume_ml"] = lesion_stats(pred.mask, affine)["lesion_volume_ml"]
    seq["modality_used"] = seq["declared_modality"] or seq.get("implicit_modality")
    return seq


def _weights(sequences: list[dict], rule: str, table: dict) -> list[float] | None:
    if rule != "weighted":
        return None
    weights = modality_weights([s["modality_used"] for s in sequences], table)
    for seq, w in zip(sequences, weights):
        seq["fusion_weight"] = w
    return weights


def _preprocessed(predictor, images, paths, registration, rule, table, learned=None):
    """Each sequence to MNI, predicted and fused there; the fused map back on the first sequence's grid."""
    import nibabel as nib

    from mome.data.preprocess import preprocess as run_preprocess, to_native
    from mome.utils.nifti import load_nifti

    profile = "authors" if ((predictor.record or {}).get("nnunet") or {}).get("preprocess_profile") == "authors" \
        else "mome"
    with tempfile.TemporaryDirectory(prefix="mome-subject-") as tmp:
        preps, preds, sequences, records = [], [], [], []
        for i, path in enumerate(paths):
            prep = run_preprocess(path, Path(tmp) / f"mni{i}", registration=registration, profile=profile)
            mni_img, _ = load_nifti(prep.image_path)
            brain = np.asarray(nib.load(str(prep.brain_mask_path)).dataobj) > 0
            pred = predictor.predict_image(mni_img, brain_mask=brain)
            preps.append(prep)
            preds.append(pred)
            sequences.append(_describe(path, pred, brain, mni_img.affine))
            records.append(json.loads(prep.record_path.read_text()))
        weights = _weights(sequences, rule, table)
        fused_mni = _fuse(preds, sequences, rule, weights, learned)
        fused = np.asarray(to_native(fused_mni, preps[0], interpolation="linear", threshold=None).dataobj,
                           dtype=np.float32)
        spread_mni = _spread(preds, rule, weights)
        spread = None if spread_mni is None else np.asarray(
            to_native(spread_mni, preps[0], interpolation="linear", threshold=None).dataobj, dtype=np.float32)
        native_brain = np.asarray(to_native(brain.astype(np.uint8), preps[0],
                                            interpolation="nearest").dataobj) > 0
    if fused.shape != tuple(images[0].shape[:3]):
        raise InputError(f"preprocessing mapped the mask to shape {fused.shape}, not the input's {images[0].shape[:3]}")
    return sequences, weights, fused, spread, native_brain, records, preds
