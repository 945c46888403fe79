"""mome: universal brain-lesion segmentation with a Mixture of Modality Experts (Zhang et al., MICCAI 2024).

Public API:
    create_model(name, **overrides)  build a network from a preset name or config (random weights)
    load_model(folder)               load a saved model folder (safetensors + config.json)
    save_model(model, folder)        save one
    predict(image_or_path, model)    segment the lesions of one image (mask, probabilities, stats)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mome")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"


def create_model(name="paper", **overrides):
    """Build a model with fresh weights.

    Args:
        name: a preset name (``paper``, ``cpu``, ``tiny``; see ``mome info``) or a config object.
        **overrides: MoMEConfig fields to change, e.g. ``gate_type="basic"``,
            ``gate_activation="softmax"``, ``modalities=["T1", "FLAIR"]``.
    """
    from mome.model import build_model, get_preset_config

    config = get_preset_config(name) if isinstance(name, str) else name
    if overrides:
        config = config.replace(**overrides)
    return build_model(config)


def load_model(folder, map_location="cpu"):
    """Load a model folder written by :func:`save_model` (weights are checked against the config)."""
    from mome.weights.store import load_model as _load

    return _load(folder, map_location=map_location)


def save_model(model, folder, overwrite=False, metadata=None):
    """Save ``model`` as ``folder/config.json`` + ``folder/model.safetensors``."""
    from mome.weights.store import save_model as _save

    return _save(model, folder, overwrite=overwrite, metadata=metadata)


def predict(image_or_path, model=None, **options):
    """Segment the lesions of one 3D brain MR image; no modality needed.

    Args:
        image_or_path: a ``.nii``/``.nii.gz`` path or a nibabel image.
        model: ``None`` (the registered default model), a registered name, a model folder or a loaded network.
        **options: ``preprocess`` (MNI pipeline first), ``device`` (auto/cpu/cuda), ``tta``, ``overlap``,
            ``precision`` (fp32/bf16), ``patch_size``.

    Returns:
        :class:`mome.inference.PredictionResult` with ``mask`` and ``probabilities`` (nibabel images in
        the input's exact geometry) and ``stats`` (lesion volume in ml, count, gate expert shares).
    """
    from mome.inference.api import predict as _predict

    return _predict(image_or_path, model, **options)


__all__ = ["create_model", "load_model", "save_model", "predict", "__version__"]
