"""A learned late fusion of one subject's sequences (``--fusion learned``): logistic stacking.

A step in the direction of MoME+ (which learns to combine sequences with a trained network and modality
dropout) that costs no retraining of MoME: a logistic regression over the per-sequence lesion logits,

    p = sigmoid(b + sum_m present_m * (w_m * logit(p_m) + c_m)),

one weight ``w_m`` and one offset ``c_m`` per modality ``m`` (the declared modality of a sequence, else the
gate's implicit one; several sequences of one modality are averaged in logit space). It is fitted
(scikit-learn) on the per-sequence predictions of the model on multi-sequence *training* subjects, with
every non-empty subset of each subject's sequences as one example (modality dropout), so that it applies to
whichever sequences a subject has. The fitted parameters live in the model folder's ``config.json``
(``fusion_learned``), written by ``benchmarks/learned_fusion.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mome.errors import ConfigError

EPS = 1e-4


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(p / (1.0 - p))


def features(probabilities: Sequence[np.ndarray], modalities: Sequence[str | None],
             order: Sequence[str]) -> np.ndarray:
    """(..., 2 * len(order)) features: per modality of ``order`` its mean lesion logit (0 when absent), then
    its presence (0/1). A sequence of a modality outside ``order`` is refused."""
    unknown = [m for m in modalities if m not in order]
    if unknown:
        raise ConfigError(f"the learned fusion knows the modalities {list(order)}, not {unknown}")
    shape = np.asarray(probabilities[0]).shape
    out = np.zeros((*shape, 2 * len(order)), np.float32)
    for k, name in enumerate(order):
        picked = [logit(p) for p, m in zip(probabilities, modalities) if m == name]
        if picked:
            out[..., k] = np.mean(picked, axis=0)
            out[..., len(order) + k] = 1.0
    return out


def check_params(params) -> dict:
    """The ``fusion_learned`` entry of a model record, checked."""
    if not isinstance(params, dict):
        raise ConfigError("this model has no learned fusion (its config.json lacks fusion_learned); use "
                          "--fusion weighted, mean or max")
    order = params.get("modalities")
    coef, intercept = params.get("coef"), params.get("intercept")
    if (not isinstance(order, list) or not order or not isinstance(coef, list) or len(coef) != 2 * len(order)
            or not all(isinstance(c, (int, float)) and np.isfinite(c) for c in [*coef, intercept or 0.0])
            or not isinstance(intercept, (int, float))):
        raise ConfigError("the model's fusion_learned entry is malformed (modalities, coef of 2 per modality, "
                          "intercept)")
    return params


def apply(probabilities: Sequence[np.ndarray], modalities: Sequence[str | None], params: dict) -> np.ndarray:
    """The fused lesion probability (float32) of the sequences under the fitted parameters."""
    params = check_params(params)
    x = features(probabilities, modalities, params["modalities"])
    z = x @ np.asarray(params["coef"], dtype=np.float32) + np.float32(params["intercept"])
    return (1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))).astype(np.float32)
