"""The Python API behind ``mome predict``: one image in, mask + probabilities + statistics out.

``predict`` works in memory; ``predict_to_files`` adds the output naming and the atomic writing the
CLI uses (single image and batch alike).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mome.errors import ConfigError, InputError
from mome.inference.outputs import gate_stats, image_like, lesion_stats, save_image, save_preview, write_stats_json
from mome.inference.fusion import declared_modality
from mome.inference.predictor import Prediction, Predictor
from mome.inference.qc import qc_flags
from mome.utils.atomic import check_writable, remove_empty_folders
from mome.utils.nifti import check_segmentable, is_nifti_path, load_nifti, strip_nifti_suffix


@dataclass
class PredictionResult:
    """Everything one prediction produced, on the input's grid.

    Attributes:
        mask: uint8 NIfTI (0 background, 1 lesion) with the input's exact affine, shape and qform/sform.
        probabilities: float32 NIfTI of the lesion probability, same geometry.
        stats: lesion volume (ml), count, gate shares, model and settings (see
            :func:`mome.inference.outputs.lesion_stats`).
        image: the input image as read.
        prediction: the raw network output (class probabilities and gate maps; in MNI space with
            ``preprocess``).
        uncertainty: float32 NIfTI of the voxel uncertainty with ``uncertainty=True``, else ``None``.
    """

    mask: object
    probabilities: object
    stats: dict
    image: object
    prediction: Prediction = field(repr=False)
    uncertainty: object = None


def make_predictor(model=None, **options) -> tuple[Predictor, dict]:
    """A predictor from a predictor, a loaded network, a model folder, a registered name or ``None``
    (the default model); returns it with the model record (``{}`` when unknown).

    Imported nnU-Net models (official MoME, ``mome weights import-nnunet``) get a
    :class:`~mome.inference.nnunet_backend.NnunetPredictor`: nnU-Net's own inference, as they were
    trained and validated; ``fast=True`` makes it one whole-volume window without mirroring. mome's
    own models get a :class:`Predictor` (``fast`` = whole volume, no TTA: already its default).
    ``backend`` defaults to :func:`~mome.inference.backends.default_backend` (``auto``: OpenVINO on a CPU
    where it is installed).
    """
    from mome.inference.interactive import DEFAULT_CLICKS, InteractivePredictor, is_interactive
    from mome.inference.nnunet_backend import NnunetPredictor, is_nnunet_record

    if isinstance(model, (Predictor, NnunetPredictor, InteractivePredictor)):
        return model, model.record
    import torch

    fast = bool(options.pop("fast", False))
    from mome.inference.backends import default_backend

    options["backend"] = options.get("backend") or default_backend()
    clicks, seed = options.pop("clicks", None), options.pop("seed", 0)
    if isinstance(model, torch.nn.Module):
        net, record = model, {}
    else:
        from mome.weights.registry import resolve_model

        net, record = resolve_model(None if model is None else str(model))
    uncertainty = bool(options.pop("uncertainty", False))
    if uncertainty and (is_interactive(record) or is_nnunet_record(record)):
        from mome.errors import NotImplementedFeatureError

        raise NotImplementedFeatureError("--uncertainty (expert disagreement) is implemented for mome's own MoME "
                                         "models only, not for imported nnU-Net or interactive models")
    if is_interactive(record):
        if options.get("backend") == "openvino":
            raise ConfigError("--backend openvino is not implemented for interactive models (SAM-Med3D)")
        if options.get("tta"):
            raise ConfigError("--tta is not implemented for interactive models (SAM-Med3D)")
        return InteractivePredictor(net, record, n_clicks=DEFAULT_CLICKS if clicks is None else clicks, seed=seed,
                                    device=options.get("device", "auto")), record
    if clicks is not None:
        raise ConfigError("--clicks is for interactive models (SAM-Med3D); this model segments automatically")
    if is_nnunet_record(record):
        return _nnunet_predictor(net, record, fast, options), record
    if record.get("nnunet"):  # imported before the plans were stored: nnU-Net's inference cannot be rebuilt
        from mome.errors import ConfigError

        folder = (record.get("resolved") or {}).get("folder") or "this model folder"
        raise ConfigError(f"{folder} was imported from nnU-Net by an older mome without its plans and "
                          "dataset.json; import it again (mome weights import-official / import-nnunet)")
    if fast:
        options.update(patch_size="whole", tta=False)
    return Predictor.from_record(net, record, uncertainty=uncertainty, **options), record


def _nnunet_predictor(net, record: dict, fast: bool, options: dict):
    """nnU-Net's inference; refuses the options that only mome's own predictor has."""
    from mome.errors import ConfigError
    from mome.inference.nnunet_backend import NnunetPredictor

    unsupported = {"skip_experts": 0.0, "max_experts": None, "grouped_experts": False, "channels_last": False}
    for name, default in unsupported.items():
        if options.get(name, default) not in (default,):
            raise ConfigError(f"--{name.replace('_', '-')} is not available for imported nnU-Net models, which "
                              "predict through nnU-Net's own inference")
    overlap = float(options.get("overlap", 0.5))
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"overlap must be in [0, 1), got {overlap}")
    predictor = NnunetPredictor(net, record, device=options.get("device", "auto"), fast=fast,
                                precision=options.get("precision", "fp32"), tile_step_size=1.0 - overlap,
                                progress=bool(options.get("progress", False)),
                                backend=options.get("backend", "torch"))
    return predictor


def predict(image_or_path, model=None, *, preprocess: bool = False, registration: str = "auto",
            **options) -> PredictionResult:
    """Segment the lesions of one 3D brain MR image (any of T1, T2, T1ce, FLAIR, DWI; no modality needed).

    Args:
        image_or_path: a ``.nii``/``.nii.gz`` path or a 3D nibabel image. Without ``preprocess`` it should
            be skull-stripped (the z-score uses the non-zero voxels as the brain), ideally MNI-like.
        model: ``None`` (the registered default model), a registered name, a model folder, a loaded
            network or a :class:`Predictor` (reused as is; ``options`` are then ignored).
        preprocess: run the MNI pipeline (registration, brain mask, crop) first and map the mask back
            to the scan's native grid.
        registration: with ``preprocess``: ``auto`` (scans on a known MNI152 grid are not registered
            again), ``always`` or ``never`` (see :func:`mome.data.registration.register_to_mni`).
        **options: :class:`Predictor` options (``device``, ``tta``, ``overlap``, ``precision``,
            ``patch_size``, ``sw_batch_size``...). ``patch_size`` defaults to ``"whole"`` (one window over
            the padded volume: measured faster and no less accurate than sliding windows, see
            docs/performance.md); pass ``patch_size=None`` for sliding windows of the training patch.
            ``precision`` defaults to ``"auto"`` (fp32 on a CPU; bf16 autocast on a GPU with bf16: see
            :func:`mome.inference.predictor.resolve_precision`).

    Returns:
        :class:`PredictionResult`; its images share the input's exact geometry.

    Raises:
        InputError: missing, unreadable, non-3D, non-finite or all-zero input.
        ConfigError / CheckpointError: unknown model, no default model, missing weights, bad options.
    """
    from mome.inference.interactive import InteractivePredictor, load_reference

    reference = options.pop("reference", None)
    if options.get("clicks") is not None and reference is None:
        raise InputError("clicks were requested without a reference mask: simulated clicks are drawn from the "
                         "reference lesion (pass --reference MASK)")
    img, data, path = load_input(image_or_path)
    ref = None if reference is None else load_reference(reference, img)
    options.setdefault("patch_size", "whole")  # mome's models; imported nnU-Net models: see make_predictor
    options.setdefault("precision", "auto")
    predictor, record = make_predictor(model, **options)
    interactive = isinstance(predictor, InteractivePredictor)
    if interactive and ref is None:
        raise InputError("this model (SAM-Med3D) is interactive: its clicks are simulated from a reference mask of "
                         "the lesion; pass --reference MASK")
    if ref is not None and not interactive:
        raise ConfigError("--reference is for interactive models (SAM-Med3D); this model segments automatically")
    if interactive and preprocess:
        from mome.errors import NotImplementedFeatureError

        raise NotImplementedFeatureError("--preprocess is not implemented for interactive models; give the image "
                                         "and its reference mask on the model's grid")
    prep_record = None
    if interactive:
        pred = predictor.predict_image(img, ref)
        mask, lesion_prob, gate_region = pred.mask, pred.lesion_probability, data != 0
        brain, uncertainty = gate_region, None
    elif preprocess:
        pred, mask, lesion_prob, gate_region, brain, prep_record, uncertainty = _predict_preprocessed(
            predictor, img, path, registration)
    else:
        pred = predictor.predict_image(img)
        mask, lesion_prob, gate_region = pred.mask, pred.lesion_probability, data != 0
        brain, uncertainty = gate_region, pred.uncertainty
    stats = lesion_stats(mask, img.affine, brain_mask=brain)
    if pred.gates is not None:
        stats.update(gate_stats(pred.gates, pred.expert_names, pred.gate_activation, gate_region, pred.mask))
    resolved = record.get("resolved", {})
    stats["input"] = str(path) if path else None
    stats["model"] = resolved.get("name") or resolved.get("folder")
    stats["shape"] = [int(s) for s in img.shape[:3]]
    stats["preprocessed"] = bool(preprocess)
    if prep_record is not None:
        stats["registration"] = prep_record["registration"]
    stats["settings"] = pred.info
    stats["qc"] = qc_flags(stats, mask, brain, declared_modality(path) if path else None,
                           prep_record["registration"] if prep_record else None)
    if uncertainty is not None:
        from mome.inference.uncertainty import uncertainty_stats

        stats.update(uncertainty_stats(uncertainty, mask))
    return PredictionResult(
        mask=image_like(mask, img, np.uint8, "mome lesion mask"),
        probabilities=image_like(lesion_prob, img, np.float32, "mome lesion probability"),
        stats=stats, image=img, prediction=pred,
        uncertainty=None if uncertainty is None else image_like(uncertainty, img, np.float32, "mome uncertainty"),
    )


def output_paths(out: str | os.PathLike, *, probabilities: bool = False, stats: bool = False,
                 preview: bool = False, uncertainty: bool = False, report: bool = False) -> dict[str, Path]:
    """Where the outputs for mask path ``out`` go: ``STEM_probabilities.nii.gz``, ``STEM_stats.json``,
    ``STEM_preview.png``, ``STEM_report.html`` next to it (STEM = ``out`` without .nii/.nii.gz)."""
    out = Path(out)
    if not is_nifti_path(out):
        raise InputError(f"output {out} must end in .nii or .nii.gz (or give a folder as input for batch mode)")
    stem = strip_nifti_suffix(out.name)
    suffix = out.name[len(stem):]
    paths = {"mask": out}
    if probabilities:
        paths["probabilities"] = out.with_name(f"{stem}_probabilities{suffix}")
    if uncertainty:
        paths["uncertainty"] = out.with_name(f"{stem}_uncertainty{suffix}")
    if stats:
        paths["stats"] = out.with_name(f"{stem}_stats.json")
    if preview:
        paths["preview"] = out.with_name(f"{stem}_preview.png")
    if report:
        paths["report"] = out.with_name(f"{stem}_report.html")
    return paths


def predict_to_files(image_path: str | os.PathLike, out: str | os.PathLike, model=None, *,
                     probabilities: bool = False, stats: bool = False, preview: bool = False,
                     overwrite: bool = False, preprocess: bool = False, registration: str = "auto",
                     fusion: str | None = None, uncertainty: bool = False, report: bool = False,
                     **options) -> tuple[PredictionResult, dict[str, Path]]:
    """Predict one file (or fuse a list of one subject's sequences, :mod:`mome.inference.subject`) and write
    the mask (and the asked-for siblings) atomically.

    Every output path is checked before any work, so a refused output leaves nothing written. ``report``
    writes an HTML page (:func:`mome.report.html.subject_report`; ``niivue.umd.js`` goes beside it).

    Returns:
        ``(result, {"mask": path, "probabilities": ..., "stats": ..., "preview": ...})``.
    """
    paths = output_paths(out, probabilities=probabilities, stats=stats, preview=preview, uncertainty=uncertainty,
                         report=report)
    inputs = [Path(p) for p in image_path] if isinstance(image_path, (list, tuple)) else [Path(image_path)]
    for p in paths.values():
        check_writable(p, overwrite)
        for source in inputs:
            if p.exists() and source.exists() and p.resolve() == source.resolve():
                raise InputError(f"output {p} is an input image; choose another output path")
    if len(inputs) > 1:  # one subject's sequences, fused
        from mome.inference.subject import predict_subject

        if uncertainty:
            options["uncertainty"] = True
        result = predict_subject(inputs, model, rule=fusion, preprocess=preprocess, registration=registration,
                                 **options)
    else:
        result = predict(inputs[0], model, preprocess=preprocess, registration=registration,
                         uncertainty=uncertainty, **options)
    image_path = inputs[0]
    new = [p for p in paths.values() if not p.exists()]
    folder = paths["mask"].parent
    created = [a for a in [folder, *folder.parents] if not a.exists()]
    try:  # all outputs or none: a failure (or SIGTERM) after the mask removes the files this call created
        save_image(result.mask, paths["mask"], overwrite)
        if probabilities:
            save_image(result.probabilities, paths["probabilities"], overwrite)
        if uncertainty:
            save_image(result.uncertainty, paths["uncertainty"], overwrite)
        if stats:
            write_stats_json(result.stats, paths["stats"], overwrite)
        if preview:
            s = result.stats
            title = f"{image_path.name}: {s['lesion_volume_ml']:.2f} ml, {s['lesion_count']} lesion(s)"
            save_preview(np.asarray(result.image.dataobj, dtype=np.float32), np.asarray(result.mask.dataobj),
                         result.image.affine, paths["preview"], title=title, overwrite=overwrite)
        if report:
            new += [p for p in [paths["report"].parent / "niivue.umd.js"] if not p.exists()]
            _report(result, inputs, paths["report"], overwrite)
    except BaseException:
        for p in new:
            p.unlink(missing_ok=True)
        remove_empty_folders(created)
        raise
    return result, paths


def _report(result: PredictionResult, inputs: list[Path], path: Path, overwrite: bool) -> None:
    """The HTML report of one prediction: every input on the mask's grid, with the mask (and uncertainty)."""
    from mome.report.html import subject_report

    mask = np.asarray(result.mask.dataobj)
    sequences = []
    for source in inputs:
        img = result.image if source == inputs[0] else load_nifti(source)[0]
        if img.shape[:3] == mask.shape and np.allclose(img.affine, result.mask.affine, atol=1e-3):
            label = declared_modality(source) or "image"
            sequences.append((f"{label} ({source.name})", np.asarray(img.dataobj, dtype=np.float32)))
    unc = None if result.uncertainty is None else np.asarray(result.uncertainty.dataobj)
    subject_report(path, title=inputs[0].name if len(inputs) == 1 else f"{len(inputs)} sequences: {inputs[0].name}",
                   sequences=sequences, mask=mask, affine=result.mask.affine, stats=result.stats, uncertainty=unc,
                   overwrite=overwrite)


def load_input(image_or_path) -> tuple[object, np.ndarray, Path | None]:
    """Read and check a path or check a nibabel image: ``(image, float32 data, path or None)``."""
    if isinstance(image_or_path, (str, os.PathLike)):
        img, data = load_nifti(image_or_path)
        check_segmentable(img, data, image_or_path)
        return img, data, Path(image_or_path)
    if not hasattr(image_or_path, "affine") or not hasattr(image_or_path, "dataobj"):
        raise InputError(f"expected a NIfTI path or a nibabel image, got {type(image_or_path).__name__}")
    return _check_image(image_or_path) + (None,)


def _check_image(img) -> tuple[object, np.ndarray]:
    """The checks of :func:`mome.utils.nifti.load_nifti`, for an image already in memory."""
    import nibabel as nib

    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
        img = nib.Nifti1Image(data, img.affine, img.header if isinstance(img, nib.Nifti1Image) else None)
    if data.ndim != 3 or min(data.shape) < 2:
        raise InputError(f"image has shape {tuple(data.shape)}; mome needs one 3D volume (x, y, z), "
                         ">= 2 voxels per axis")
    if not np.all(np.isfinite(data)):
        raise InputError(f"image has {int((~np.isfinite(data)).sum())} NaN or infinite voxels; fix or mask them first")
    if not np.any(data):
        raise InputError("image is all zeros")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError("image has an invalid (singular or non-finite) affine")
    return img, data


def _predict_preprocessed(predictor, img, path: Path | None, registration: str = "auto"):
    """MNI pipeline -> predict in MNI space -> mask, probability and brain mask back on the native grid.

    Returns:
        ``(MNI-space prediction, native mask, native lesion probability, MNI brain mask, native brain mask,
        preprocessing record)``.
    """
    import nibabel as nib

    try:
        from mome.data.preprocess import preprocess as run_preprocess, to_native
    except ImportError as exc:  # the preprocessing module ships with mome; this guards partial installs
        from mome.errors import NotImplementedFeatureError

        raise NotImplementedFeatureError(f"--preprocess needs mome.data.preprocess, which is missing: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="mome-preprocess-") as tmp:
        tmp = Path(tmp)
        if path is None:  # the pipeline reads files: write the in-memory image first
            path = tmp / "input.nii.gz"
            nib.save(img, str(path))
        # the preprocessing the model was trained with: the authors' recipe for official weights
        profile = "authors" if ((predictor.record or {}).get("nnunet") or {}).get("preprocess_profile") == "authors" \
            else "mome"
        prep = run_preprocess(path, tmp / "mni", registration=registration, profile=profile)
        import json

        prep_record = json.loads(prep.record_path.read_text())
        mni_img, _ = load_nifti(prep.image_path)
        brain = np.asarray(nib.load(str(prep.brain_mask_path)).dataobj) > 0
        pred = predictor.predict_image(mni_img, brain_mask=brain)
        # one linear warp of the lesion probability, thresholded at 0.5 (= the arg-max for two classes):
        # smoother native masks than a nearest-neighbour warp of the MNI-space mask
        prob = np.asarray(to_native(pred.lesion_probability, prep, interpolation="linear",
                                    threshold=None).dataobj, dtype=np.float32)
        mask = prob > 0.5
        native_brain = np.asarray(to_native(brain.astype(np.uint8), prep, interpolation="nearest").dataobj) > 0
        uncertainty = None if pred.uncertainty is None else np.asarray(
            to_native(pred.uncertainty, prep, interpolation="linear", threshold=None).dataobj, dtype=np.float32)
    if mask.shape != tuple(img.shape[:3]):
        raise InputError(f"preprocessing mapped the mask to shape {mask.shape}, not the input's {img.shape[:3]}")
    return pred, mask.astype(np.uint8), prob, brain, native_brain, prep_record, uncertainty
