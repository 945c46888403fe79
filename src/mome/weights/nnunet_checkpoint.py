"""Read nnU-Net v2 (2.2) training checkpoints safely, and the U-Net architecture their plans describe.

An nnU-Net v2.2 checkpoint is ``torch.save`` of a dict with ``network_weights`` (the state dict),
``optimizer_state``, ``grad_scaler_state``, ``logging``, ``_best_ema``, ``current_epoch``,
``init_args`` (the trainer's constructor arguments: ``plans``, ``configuration``, ``fold``,
``dataset_json``, ``unpack_dataset``, ``device``), ``trainer_name`` and
``inference_allowed_mirroring_axes``. Besides tensors and Python builtins it holds ``torch.device``
(allowed by torch itself) and NumPy scalars (``np.float64``/``np.float32`` losses and Dice values in
``logging`` and ``_best_ema``), which unpickle through ``numpy.core.multiarray.scalar`` (NumPy 1.x
name; ``numpy._core.multiarray.scalar`` in NumPy 2), ``numpy.dtype`` and the dtype's concrete class
(``numpy.dtypes.Float64DType``...). Those are the only extra globals we allow (plus plain NumPy
arrays, which carry data only): the file is read with ``torch.load(weights_only=True)``, so nothing in
it is executed, and a reference to anything else (``os.system``, a user class...) is refused.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mome.errors import CheckpointError, ConfigError
from mome.model.config import UNetConfig

#: prefixes nnU-Net can leave on state-dict keys: DDP (``module.``) and ``torch.compile`` (``_orig_mod.``)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _numpy_allowlist() -> list[Any]:
    """The NumPy globals of nnU-Net checkpoints, under both the NumPy 1.x and 2.x module names."""
    try:  # NumPy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]
    allowed: list[Any] = [np.dtype, np.ndarray]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed.append((scalar, f"{module}.scalar"))
        allowed.append((_reconstruct, f"{module}._reconstruct"))
    # unpickling a dtype builds an instance of its concrete class (numpy.dtypes.Float64DType in NumPy
    # >= 1.25), which torch checks against the allow-list: bool, ints, uints, floats
    for code in "?bhilqBHILQefd":
        cls = type(np.dtype(code))
        if cls is not np.dtype and cls not in allowed:
            allowed.append(cls)
    return allowed


SAFE_GLOBALS: list[Any] = _numpy_allowlist()


def _global_name(entry: Any) -> str:
    if isinstance(entry, tuple):
        return entry[1]
    return f"{entry.__module__}.{entry.__qualname__}"


def allowed_global_names() -> set[str]:
    """Dotted names of the non-torch globals an nnU-Net checkpoint may reference."""
    from torch._weights_only_unpickler import _get_allowed_globals

    return set(_get_allowed_globals()) | {_global_name(e) for e in SAFE_GLOBALS}


def load_nnunet_checkpoint(path: str | os.PathLike) -> dict:
    """Load an nnU-Net v2 checkpoint without executing anything from the file.

    Args:
        path: a ``.pth`` file written by nnU-Net's ``save_checkpoint`` (e.g. ``checkpoint_best.pth``).

    Returns:
        The checkpoint dict; ``network_weights`` is a dict of tensors (on the CPU).

    Raises:
        CheckpointError: the file is missing, not a PyTorch checkpoint, truncated or corrupt,
            references Python objects outside the allow-list (tampered, or not an nnU-Net file),
            or has no ``network_weights`` state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    _refuse_damaged_container(path)
    _refuse_unsafe_globals(path)
    try:
        # scoped allow-list; entries someone else registered globally are left in place on exit
        present = set(torch.serialization.get_safe_globals())
        with torch.serialization.safe_globals([g for g in SAFE_GLOBALS if g not in present]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # the weights-only unpickler raises this for both disallowed objects and malformed pickles
        if _is_allowlist_refusal(exc):
            raise CheckpointError(f"refusing to load {path}: it contains objects outside the allow-list of "
                                  f"nnU-Net checkpoints ({_first_line(exc)}); the file may have been tampered "
                                  "with. Nothing from it was executed.") from exc
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): "
                              f"{_first_line(exc)}") from exc
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): "
                              f"{_first_line(exc)}") from exc
    return _check_layout(ckpt, path)


def _refuse_damaged_container(path: Path) -> None:
    """Name the two commonest failures plainly: an empty file, and a cut-off download (broken zip)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise CheckpointError(f"{path} is empty (truncated or corrupt download?)")
    if head == b"PK\x03\x04" and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is a damaged PyTorch zip archive (truncated or corrupt download?); "
                              "download it again")


def _refuse_unsafe_globals(path: Path) -> None:
    """Scan the pickle (without running it) and name every global outside the allow-list."""
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - unreadable here means torch.load will report it precisely
        return
    unsafe = sorted(set(found) - allowed_global_names())
    if unsafe:
        raise CheckpointError(
            f"refusing to load {path}: it references Python objects that nnU-Net checkpoints never contain "
            f"({', '.join(unsafe)}); the file may have been tampered with. Nothing from it was executed."
        )


def _check_layout(ckpt: Any, path: Path) -> dict:
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not an nnU-Net checkpoint dict")
    if "network_weights" not in ckpt:
        hint = ""
        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            hint = " (it looks like a bare state dict, not an nnU-Net training checkpoint)"
        raise CheckpointError(f"{path} has no 'network_weights' entry{hint}; keys: {sorted(map(str, ckpt))[:8]}")
    weights = ckpt["network_weights"]
    if not isinstance(weights, dict) or not weights:
        raise CheckpointError(f"{path}: 'network_weights' is not a non-empty state dict")
    bad = [k for k, v in weights.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: 'network_weights' has non-tensor entries (e.g. {bad[0]!r})")
    return ckpt


def strip_wrapper_prefixes(state: dict[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Remove ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes, in any nesting, from every key."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key
        while new.startswith(WRAPPER_PREFIXES):
            new = new.split(".", 1)[1]
        if new in out:
            raise CheckpointError(f"{source}: key {key!r} collides with another key after removing wrapper prefixes")
        out[new] = value
    return out


@dataclass
class PlansArchitecture:
    """What the plans inside a checkpoint say about its network and data.

    Attributes:
        unet: the U-Net topology (``input_channels``/``num_classes`` are filled from the weights).
        configuration: the nnU-Net configuration name (e.g. ``3d_fullres``).
        patch_size: training patch, in the network's axis order (voxels).
        spacing: target spacing, in the network's axis order (mm).
        facts: other plans entries worth keeping (dataset and plans names, reader, transposes...).
    """

    unet: UNetConfig
    configuration: str
    patch_size: list[int]
    spacing: list[float]
    facts: dict[str, Any]


def plans_architecture(ckpt: dict, source: str = "checkpoint", plans: dict | None = None,
                       dataset_json: dict | None = None) -> PlansArchitecture:
    """Read the ``PlainConvUNet`` of ``plans['configurations'][init_args['configuration']]``.

    Both plans formats are read: nnU-Net 2.2-2.3 (``UNet_class_name``, ``UNet_base_num_features``...)
    and 2.4 and later (an ``architecture`` entry with ``network_class_name`` and ``arch_kwargs``).
    Configuration inheritance (``inherits_from``) is resolved as nnU-Net's ``PlansManager`` does.
    ``input_channels`` and ``num_classes`` are taken from the state dict (first convolution and last
    segmentation layer), which is what the network was actually built with.

    Args:
        ckpt: the checkpoint dict (:func:`load_nnunet_checkpoint`).
        source: the file's name, for messages.
        plans, dataset_json: the model folder's ``plans.json`` / ``dataset.json`` when the user has them;
            default the copies inside the checkpoint's ``init_args``.

    Raises:
        CheckpointError: plans missing or not describing a 3D ``PlainConvUNet``; the named field says why.
    """
    init_args = ckpt.get("init_args") if isinstance(ckpt.get("init_args"), dict) else {}
    if plans is None:
        plans = init_args.get("plans")
    if not isinstance(plans, dict):
        raise CheckpointError(f"{source} has no nnU-Net plans in 'init_args' (is it an nnU-Net v2 checkpoint?); "
                              "pass the model's plans.json")
    if dataset_json is None:
        dataset_json = init_args.get("dataset_json")
    name = init_args.get("configuration")
    configs = plans.get("configurations")
    if name is None and isinstance(configs, dict) and len(configs) == 1:
        name = next(iter(configs))
    if not isinstance(configs, dict) or name not in configs:
        raise CheckpointError(f"{source}: configuration {name!r} is not in the plans "
                              f"(available: {sorted(configs) if isinstance(configs, dict) else 'none'})")
    cfg = resolve_configuration(configs, name, source)
    weights = strip_wrapper_prefixes(ckpt["network_weights"], source)
    try:
        topology = _architecture_topology(cfg, source) if "architecture" in cfg else _legacy_topology(cfg, source)
        n = len(topology["kernel_sizes"])
        if any(len(k) != 3 for k in topology["kernel_sizes"] + topology["strides"]):
            raise CheckpointError(f"{source}: configuration {name!r} is not 3D (kernels {topology['kernel_sizes']})")
        unet = UNetConfig(
            **topology,
            input_channels=int(_weight(weights, "encoder.stages.0.0.convs.0.conv.weight", source).shape[1]),
            num_classes=int(_weight(weights, f"decoder.seg_layers.{n - 2}.weight", source).shape[0]),
        )
        patch = [int(v) for v in cfg["patch_size"]]
        spacing = [float(v) for v in cfg["spacing"]]
    except CheckpointError:
        raise
    except KeyError as exc:
        raise CheckpointError(f"{source}: plans configuration {name!r} lacks the field {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: plans configuration {name!r} is malformed ({exc!r})") from exc
    except ConfigError as exc:  # from UNetConfig: stage counts that do not agree
        raise CheckpointError(f"{source}: plans configuration {name!r} is inconsistent: {exc}") from exc
    facts = {
        "dataset_name": plans.get("dataset_name"),
        "plans_name": plans.get("plans_name"),
        "image_reader_writer": plans.get("image_reader_writer"),
        "transpose_forward": plans.get("transpose_forward", [0, 1, 2]),
        "normalization_schemes": cfg.get("normalization_schemes"),
        "use_mask_for_norm": cfg.get("use_mask_for_norm"),
        "trainer_name": ckpt.get("trainer_name"),
        "fold": init_args.get("fold"),
        "current_epoch": ckpt.get("current_epoch"),
        "labels": (dataset_json or {}).get("labels"),
    }
    return PlansArchitecture(unet, str(name), patch, spacing, facts)


def _legacy_topology(cfg: dict, source: str) -> dict:
    """nnU-Net 2.2-2.3 plans: the U-Net is described by flat keys."""
    if cfg.get("UNet_class_name", "PlainConvUNet") != "PlainConvUNet":
        raise CheckpointError(f"{source}: network class {cfg['UNet_class_name']!r} (plans field 'UNet_class_name') "
                              "is not supported; mome imports nnU-Net PlainConvUNets")
    kernels = [list(map(int, k)) for k in cfg["conv_kernel_sizes"]]
    base, cap = int(cfg["UNet_base_num_features"]), int(cfg["unet_max_num_features"])
    return dict(features_per_stage=[min(base * 2 ** i, cap) for i in range(len(kernels))],
                strides=[list(map(int, s)) for s in cfg["pool_op_kernel_sizes"]], kernel_sizes=kernels,
                n_conv_per_stage=[int(v) for v in cfg["n_conv_per_stage_encoder"]],
                n_conv_per_stage_decoder=[int(v) for v in cfg["n_conv_per_stage_decoder"]])


# the building blocks ExpertUNet is made of; anything else in arch_kwargs is another network
_EXPECTED_OPS = {"conv_op": "torch.nn.modules.conv.Conv3d", "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                 "nonlin": "torch.nn.LeakyReLU"}


def _architecture_topology(cfg: dict, source: str) -> dict:
    """nnU-Net >= 2.4 plans: ``architecture = {network_class_name, arch_kwargs, _kw_requires_import}``."""
    arch = cfg["architecture"]
    if not isinstance(arch, dict):
        raise CheckpointError(f"{source}: plans field 'architecture' is not a dict")
    cls = str(arch.get("network_class_name", ""))
    if cls.rsplit(".", 1)[-1] != "PlainConvUNet":
        raise CheckpointError(f"{source}: network class {cls!r} (plans field 'architecture.network_class_name') "
                              "is not supported; mome imports nnU-Net PlainConvUNets")
    kw = arch["arch_kwargs"]
    for key, wanted in _EXPECTED_OPS.items():
        got = str(kw.get(key))
        if got.rsplit(".", 1)[-1] != wanted.rsplit(".", 1)[-1]:
            raise CheckpointError(f"{source}: plans field 'architecture.arch_kwargs.{key}' is {got!r}; mome's "
                                  f"U-Net uses {wanted}")
    if kw.get("dropout_op") not in (None, "None"):
        raise CheckpointError(f"{source}: plans field 'architecture.arch_kwargs.dropout_op' is {kw['dropout_op']!r}; "
                              "mome's U-Net has no dropout")
    norm_kwargs = kw.get("norm_op_kwargs") or {}
    if not norm_kwargs.get("affine", False):
        raise CheckpointError(f"{source}: plans field 'architecture.arch_kwargs.norm_op_kwargs.affine' is not true; "
                              "mome's U-Net uses affine InstanceNorm")
    n = int(kw["n_stages"])
    out = dict(features_per_stage=[int(v) for v in kw["features_per_stage"]],
               strides=[list(map(int, s)) for s in kw["strides"]],
               kernel_sizes=[list(map(int, k)) for k in kw["kernel_sizes"]],
               n_conv_per_stage=[int(v) for v in kw["n_conv_per_stage"]],
               n_conv_per_stage_decoder=[int(v) for v in kw["n_conv_per_stage_decoder"]],
               conv_bias=bool(kw.get("conv_bias", True)), norm_eps=float(norm_kwargs.get("eps", 1e-5)),
               leaky_slope=float((kw.get("nonlin_kwargs") or {}).get("negative_slope", 0.01)))
    if len(out["features_per_stage"]) != n:
        raise CheckpointError(f"{source}: plans field 'architecture.arch_kwargs.n_stages' is {n} but "
                              f"'features_per_stage' has {len(out['features_per_stage'])} entries")
    return out


def resolve_configuration(configs: dict, name: str, source: str, seen: tuple[str, ...] = ()) -> dict:
    """One plans configuration with ``inherits_from`` resolved (as nnU-Net's ``PlansManager`` does)."""
    if name in seen:
        raise CheckpointError(f"{source}: circular 'inherits_from' in plans: {' -> '.join(seen + (name,))}")
    if name not in configs or not isinstance(configs[name], dict):
        raise CheckpointError(f"{source}: plans configuration {name!r} is missing")
    cfg = dict(configs[name])
    parent = cfg.get("inherits_from")
    if parent is not None:
        base = resolve_configuration(configs, parent, source, seen + (name,))
        base.update(cfg)
        cfg = base
    return cfg


def _weight(weights: dict[str, torch.Tensor], key: str, source: str) -> torch.Tensor:
    if key not in weights:
        raise CheckpointError(f"{source}: 'network_weights' has no {key!r}; is this a PlainConvUNet with the "
                              "number of stages its plans say?")
    return weights[key]


_REFUSAL_MARKERS = ("unsupported global", "allowlisted", "is blocked", "unsupported class")


def _is_allowlist_refusal(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(m in text for m in _REFUSAL_MARKERS)


def _first_line(exc: BaseException) -> str:
    """The informative line of torch's long weights-only error (or the first line of any other)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    for line in lines:
        if any(m in line.lower() for m in (*_REFUSAL_MARKERS, "unsupported operand")):
            return line
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
