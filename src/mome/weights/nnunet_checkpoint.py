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


def plans_architecture(ckpt: dict, source: str = "checkpoint") -> PlansArchitecture:
    """Read the ``PlainConvUNet`` of ``init_args['plans']['configurations'][init_args['configuration']]``.

    Configuration inheritance (``inherits_from``) is resolved as nnU-Net's ``PlansManager`` does.
    ``input_channels`` and ``num_classes`` are taken from the state dict (first convolution and last
    segmentation layer), which is what the network was actually built with.

    Raises:
        CheckpointError: ``init_args``/plans missing or not describing a 3D ``PlainConvUNet``.
    """
    init_args = ckpt.get("init_args")
    if not isinstance(init_args, dict) or not isinstance(init_args.get("plans"), dict):
        raise CheckpointError(f"{source} has no nnU-Net plans in 'init_args' (is it an nnU-Net v2 checkpoint?)")
    plans = init_args["plans"]
    name = init_args.get("configuration")
    configs = plans.get("configurations")
    if not isinstance(configs, dict) or name not in configs:
        raise CheckpointError(f"{source}: configuration {name!r} is not in the plans "
                              f"(available: {sorted(configs) if isinstance(configs, dict) else 'none'})")
    cfg = _resolve_configuration(configs, name, source)
    try:
        if cfg.get("UNet_class_name", "PlainConvUNet") != "PlainConvUNet":
            raise CheckpointError(f"{source}: network class {cfg['UNet_class_name']!r} is not supported "
                                  "(MoME experts and gate are nnU-Net PlainConvUNets)")
        kernels = [list(map(int, k)) for k in cfg["conv_kernel_sizes"]]
        strides = [list(map(int, s)) for s in cfg["pool_op_kernel_sizes"]]
        n = len(kernels)
        if any(len(k) != 3 for k in kernels + strides):
            raise CheckpointError(f"{source}: configuration {name!r} is not 3D (kernels {kernels})")
        base, cap = int(cfg["UNet_base_num_features"]), int(cfg["unet_max_num_features"])
        weights = strip_wrapper_prefixes(ckpt["network_weights"], source)
        unet = UNetConfig(
            features_per_stage=[min(base * 2 ** i, cap) for i in range(n)],
            strides=strides,
            kernel_sizes=kernels,
            n_conv_per_stage=[int(v) for v in cfg["n_conv_per_stage_encoder"]],
            n_conv_per_stage_decoder=[int(v) for v in cfg["n_conv_per_stage_decoder"]],
            input_channels=int(_weight(weights, "encoder.stages.0.0.convs.0.conv.weight", source).shape[1]),
            num_classes=int(_weight(weights, f"decoder.seg_layers.{n - 2}.weight", source).shape[0]),
        )
        patch = [int(v) for v in cfg["patch_size"]]
        spacing = [float(v) for v in cfg["spacing"]]
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: plans configuration {name!r} is incomplete or malformed ({exc!r})") from exc
    except ConfigError as exc:  # from UNetConfig: stage counts that do not agree
        raise CheckpointError(f"{source}: plans configuration {name!r} is inconsistent: {exc}") from exc
    facts = {
        "dataset_name": plans.get("dataset_name"),
        "plans_name": plans.get("plans_name"),
        "image_reader_writer": plans.get("image_reader_writer"),
        "transpose_forward": plans.get("transpose_forward", [0, 1, 2]),
        "normalization_schemes": cfg.get("normalization_schemes"),
        "trainer_name": ckpt.get("trainer_name"),
        "fold": init_args.get("fold"),
        "current_epoch": ckpt.get("current_epoch"),
        "labels": (init_args.get("dataset_json") or {}).get("labels"),
    }
    return PlansArchitecture(unet, str(name), patch, spacing, facts)


def _resolve_configuration(configs: dict, name: str, source: str, seen: tuple[str, ...] = ()) -> dict:
    if name in seen:
        raise CheckpointError(f"{source}: circular 'inherits_from' in plans: {' -> '.join(seen + (name,))}")
    if name not in configs or not isinstance(configs[name], dict):
        raise CheckpointError(f"{source}: plans configuration {name!r} is missing")
    cfg = dict(configs[name])
    parent = cfg.get("inherits_from")
    if parent is not None:
        base = _resolve_configuration(configs, parent, source, seen + (name,))
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
