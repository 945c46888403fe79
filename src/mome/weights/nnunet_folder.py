"""Import a trained nnU-Net v2 model folder (any dataset, any fold) as a single-U-Net mome model folder.

nnU-Net writes ``nnUNet_results/DatasetXXX/TRAINER__PLANS__CONFIG/`` with ``dataset.json``,
``plans.json`` and ``fold_X/checkpoint_final.pth`` (and ``checkpoint_best.pth``). The importer
accepts that folder, one of its ``fold_X`` folders, or a checkpoint file; plans and dataset.json
come from the folder when present (else from the checkpoint's ``init_args``) and must agree with
the checkpoint. Plans in the 2.2-2.3 and the >= 2.4 formats are read.

What nnU-Net's inference needs is stored in the model folder's ``config.json`` under ``nnunet``
(:func:`nnunet_record`): the plans, dataset.json, configuration, mirroring axes and whether the
preprocessing crops to the non-zero box. :mod:`mome.inference.nnunet_backend` predicts with it
through nnU-Net's own code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mome.errors import CheckpointError
from mome.model import build_model
from mome.weights.nnunet_checkpoint import (
    PlansArchitecture,
    load_nnunet_checkpoint,
    plans_architecture,
    strip_wrapper_prefixes,
)
from mome.weights.store import save_model

CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_best.pth")
#: preprocessing profiles: what must be done to a scan before nnU-Net's own preprocessing sees it
PROFILES = ("none", "authors")


def nnunet_record(ckpt: dict, arch: PlansArchitecture, plans: dict, dataset_json: dict, *,
                  crop_to_nonzero: bool = True, profile: str = "none") -> dict:
    """The facts nnU-Net's inference needs, as stored in ``config.json['nnunet']``.

    Args:
        ckpt: the checkpoint dict (for ``trainer_name`` and ``inference_allowed_mirroring_axes``).
        arch: what :func:`plans_architecture` read from the same plans.
        plans, dataset_json: the plans and dataset.json the model was trained with.
        crop_to_nonzero: nnU-Net's preprocessing crops to the non-zero box (stock nnU-Net); the
            authors' MoME fork disabled it, so their models need ``False``.
        profile: the preprocessing a scan needs before nnU-Net's (:data:`PROFILES`): ``none`` (the
            scan as given) or ``authors`` (MoME's MNI recipe, :mod:`mome.data.preprocess`).
    """
    axes = ckpt.get("inference_allowed_mirroring_axes")
    return {
        **arch.facts,
        "configuration": arch.configuration,
        "patch_size_network_axes": arch.patch_size,
        "spacing_network_axes": arch.spacing,
        "plans": plans,
        "dataset_json": dataset_json,
        "inference_allowed_mirroring_axes": None if axes is None else [int(a) for a in axes],
        "crop_to_nonzero": bool(crop_to_nonzero),
        "preprocess_profile": profile,
    }


def find_checkpoint(src: str | os.PathLike, fold: str | None = None,
                    checkpoint_name: str | None = None) -> tuple[Path, Path | None]:
    """``(checkpoint file, trained model folder or None)`` for ``src``.

    ``src`` is a trained model folder (``fold_*/`` inside), a ``fold_X`` folder, or a ``.pth`` file.
    Without ``fold`` a model folder must hold exactly one fold; without ``checkpoint_name``
    ``checkpoint_final.pth`` is taken, else ``checkpoint_best.pth``.
    """
    src = Path(src).expanduser()
    if src.is_file():
        return src, src.parent.parent if (src.parent.parent / "plans.json").is_file() else None
    if not src.is_dir():
        raise CheckpointError(f"{src} does not exist; pass an nnU-Net model folder (dataset.json, plans.json, "
                              "fold_X/), a fold_X folder or a checkpoint .pth file")
    if src.name.startswith("fold_") and not any(src.glob("fold_*")):
        fold_dir, model_dir = src, src.parent if (src.parent / "plans.json").is_file() else None
    else:
        folds = sorted(p for p in src.glob("fold_*") if p.is_dir())
        if fold is not None:
            fold_dir = src / f"fold_{fold}"
            if not fold_dir.is_dir():
                raise CheckpointError(f"{src} has no fold_{fold}/ (folds: {', '.join(p.name for p in folds) or 'none'})")
        elif len(folds) == 1:
            fold_dir = folds[0]
        elif not folds:
            raise CheckpointError(f"{src} has no fold_X/ folder; is it an nnU-Net trained model folder "
                                  "(dataset.json, plans.json, fold_0/checkpoint_final.pth)?")
        else:
            raise CheckpointError(f"{src} holds {len(folds)} folds ({', '.join(p.name for p in folds)}); choose one "
                                  "with --fold (mome imports one network, not nnU-Net's fold ensemble)")
        model_dir = src
    names = [checkpoint_name] if checkpoint_name else list(CHECKPOINT_NAMES)
    for name in names:
        if (fold_dir / name).is_file():
            return fold_dir / name, model_dir
    raise CheckpointError(f"{fold_dir} has no {' or '.join(names)}")


def read_json(path: Path, what: str) -> dict:
    try:
        value = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{what} {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{what} {path} is not readable JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise CheckpointError(f"{what} {path} is not a JSON object")
    return value


def plans_and_dataset(ckpt: dict, source: str, plans_path: Path | None,
                      dataset_json_path: Path | None) -> tuple[dict, dict, PlansArchitecture]:
    """The plans and dataset.json to use, checked against the checkpoint's own copies.

    When both a ``plans.json`` and plans inside the checkpoint exist they must describe the same
    network and data handling; the first field that differs is named.
    """
    init_args = ckpt.get("init_args") if isinstance(ckpt.get("init_args"), dict) else {}
    inner_plans, inner_ds = init_args.get("plans"), init_args.get("dataset_json")
    plans = read_json(plans_path, "plans file") if plans_path is not None else inner_plans
    dataset_json = read_json(dataset_json_path, "dataset.json") if dataset_json_path is not None else inner_ds
    if not isinstance(plans, dict):
        raise CheckpointError(f"{source} carries no plans and no plans.json was found; pass --plans PLANS.json")
    if not isinstance(dataset_json, dict):
        raise CheckpointError(f"{source} carries no dataset.json and none was found; pass --dataset-json FILE")
    if "labels" not in dataset_json:
        raise CheckpointError(f"dataset.json of {source} lacks the field 'labels'")
    arch = plans_architecture(ckpt, source, plans=plans, dataset_json=dataset_json)
    if isinstance(inner_plans, dict) and plans is not inner_plans:
        inner = plans_architecture(ckpt, f"{source} (its own plans)", plans=inner_plans, dataset_json=dataset_json)
        for field, a, b in [("architecture", arch.unet, inner.unet), ("patch_size", arch.patch_size, inner.patch_size),
                            ("spacing", arch.spacing, inner.spacing),
                            *[(k, arch.facts.get(k), inner.facts.get(k)) for k in
                              ("normalization_schemes", "use_mask_for_norm", "transpose_forward",
                               "image_reader_writer")]]:
            if a != b:
                raise CheckpointError(f"plans {plans_path} disagree with the plans inside {source} on the field "
                                      f"{field!r} ({a} vs {b}); use the plans the checkpoint was trained with")
    return plans, dataset_json, arch


def import_nnunet_folder(src: str | os.PathLike, out_dir: str | os.PathLike, *, fold: str | None = None,
                         checkpoint_name: str | None = None, plans: str | os.PathLike | None = None,
                         dataset_json: str | os.PathLike | None = None, overwrite: bool = False) -> Path:
    """Convert one fold of a trained nnU-Net v2 PlainConvUNet model into a mome model folder.

    Args:
        src: the trained model folder, a ``fold_X`` folder or a checkpoint file.
        out_dir: the model folder to write.
        fold: which ``fold_X`` (required when the folder holds several).
        checkpoint_name: ``checkpoint_final.pth`` (default, else ``checkpoint_best.pth``) or another name.
        plans, dataset_json: override files; default the folder's, else the checkpoint's own copies.
        overwrite: replace an existing ``out_dir``.

    Raises:
        CheckpointError: missing files, unreadable or unsafe checkpoint, unsupported or inconsistent plans.
        OutputExistsError: ``out_dir`` exists and not ``overwrite``.
    """
    from mome.utils.atomic import check_writable

    check_writable(out_dir, overwrite)
    ckpt_path, model_dir = find_checkpoint(src, fold, checkpoint_name)
    plans_path = Path(plans) if plans is not None else (
        model_dir / "plans.json" if model_dir is not None and (model_dir / "plans.json").is_file() else None)
    ds_path = Path(dataset_json) if dataset_json is not None else (
        model_dir / "dataset.json" if model_dir is not None and (model_dir / "dataset.json").is_file() else None)
    ckpt = load_nnunet_checkpoint(ckpt_path)
    plans_dict, ds_dict, arch = plans_and_dataset(ckpt, str(ckpt_path), plans_path, ds_path)
    from mome.utils.provenance import sha256_file
    from mome.weights.official import file_axes, load_nnunet_state

    net = build_model(arch.unet)
    load_nnunet_state(net, strip_wrapper_prefixes(ckpt["network_weights"], str(ckpt_path)), str(ckpt_path))
    metadata = {
        "description": f"nnU-Net v2 model {arch.facts.get('dataset_name')} ({arch.configuration}, fold "
                       f"{arch.facts.get('fold')}), imported from {ckpt_path.name}",
        "source": str(ckpt_path.resolve()),
        "patch_size": file_axes(arch.patch_size, arch.facts),
        "spacing_mm": file_axes(arch.spacing, arch.facts),
        "nnunet": nnunet_record(ckpt, arch, plans_dict, ds_dict),
        "imported_from": {"checkpoint": str(ckpt_path.resolve()), "sha256": sha256_file(ckpt_path),
                          "plans": None if plans_path is None else str(plans_path.resolve()),
                          "dataset_json": None if ds_path is None else str(ds_path.resolve())},
    }
    return save_model(net, out_dir, overwrite=overwrite, metadata=metadata)
