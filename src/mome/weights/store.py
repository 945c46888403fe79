"""Model folders: ``config.json`` (architecture + provenance) and ``model.safetensors`` (weights).

safetensors holds only tensors, so loading never executes code from the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from mome.errors import CheckpointError, ConfigError
from mome.model import build_model
from mome.model.config import config_from_dict, config_to_dict
from mome.utils.atomic import atomic_path
from mome.utils.provenance import provenance

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def save_model(model: torch.nn.Module, folder: str | os.PathLike, *, overwrite: bool = False,
               metadata: dict | None = None) -> Path:
    """Write ``folder/config.json`` and ``folder/model.safetensors`` atomically.

    Args:
        model: a network built by :func:`mome.model.build_model` (it has a ``config`` attribute).
        folder: the model folder to create.
        overwrite: replace an existing folder.
        metadata: extra JSON-able facts (training recipe, data, licence, metrics...).
    """
    from safetensors.torch import save_file

    record = {"config": config_to_dict(model.config), "provenance": provenance(), **(metadata or {})}
    state = unique_state_dict(model)
    with atomic_path(folder, overwrite=overwrite) as tmp:
        tmp.mkdir(parents=True)
        save_file(state, str(tmp / WEIGHTS_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps(record, indent=2))
    return Path(folder)


def read_model_record(folder: str | os.PathLike) -> dict:
    """The parsed ``config.json`` of a model folder."""
    folder = Path(folder)
    cfg_path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise CheckpointError(f"model folder {folder} does not exist")
    if not cfg_path.is_file():
        raise CheckpointError(f"model folder {folder} has no {CONFIG_FILE}")
    try:
        record = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if not isinstance(record, dict) or "config" not in record:
        raise CheckpointError(f"{cfg_path} has no 'config' entry")
    if not isinstance(record["config"], dict):
        raise CheckpointError(f"{cfg_path}: 'config' must be an object")
    _check_metadata(record, cfg_path)
    return record


def _check_metadata(record: dict, where: Path) -> None:
    """Typed, bounded inference metadata: ``patch_size`` 3 integers in [4, 1024] (or "whole"), ``spacing_mm``
    3 numbers in [0.05, 20] mm, ``modalities`` a list of strings."""
    patch = record.get("patch_size")
    if patch is not None and patch != "whole":
        if (not isinstance(patch, list) or len(patch) != 3
                or any(isinstance(v, bool) or not isinstance(v, int) or not 4 <= v <= 1024 for v in patch)):
            raise CheckpointError(f"{where}: 'patch_size' = {json.dumps(patch)}; expected 3 integers from 4 to 1024")
    spacing = record.get("spacing_mm")
    if spacing is not None:
        if (not isinstance(spacing, list) or len(spacing) != 3
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.05 <= v <= 20 for v in spacing)):
            raise CheckpointError(f"{where}: 'spacing_mm' = {json.dumps(spacing)}; expected 3 numbers from 0.05 to 20 mm")
    mods = record.get("modalities")
    if mods is not None and (not isinstance(mods, list) or not all(isinstance(m, str) for m in mods)):
        raise CheckpointError(f"{where}: 'modalities' = {json.dumps(mods)}; expected a list of names")


def load_model(folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the network from ``config.json`` and load ``model.safetensors`` strictly.

    Raises:
        CheckpointError: missing or corrupt files, or weights that do not match the config
            (missing/unexpected keys, wrong shapes).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    record = read_model_record(folder)
    try:
        config = config_from_dict(record["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{folder / CONFIG_FILE}: {exc}") from exc
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"model folder {folder} has no {WEIGHTS_FILE}")
    try:
        state = load_file(str(weights_path), device=str(map_location))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights_path} is corrupt or truncated: {exc}") from exc
    model = build_model(config)
    load_unique_state_dict(model, state, source=str(weights_path))
    return model


def _aliases(model: torch.nn.Module) -> set[str]:
    """State-dict keys whose tensor is the same storage as an earlier key.

    nnU-Net's ``PlainConvUNet`` holds its encoder twice (``encoder.*`` and ``decoder.encoder.*``);
    safetensors refuses shared tensors, and writing them twice would double the encoder on disk.
    """
    seen: dict[tuple, str] = {}
    aliases = set()
    for k, v in model.state_dict(keep_vars=True).items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), v.dtype)
        if v.numel() and key in seen:
            aliases.add(k)
        else:
            seen[key] = k
    return aliases


def unique_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without aliased duplicates, as contiguous CPU tensors (ready for safetensors)."""
    aliases = _aliases(model)
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items() if k not in aliases}


def load_unique_state_dict(model: torch.nn.Module, state: dict, source: str) -> None:
    """Load a state dict written by :func:`unique_state_dict`, strictly (aliases are filled by sharing)."""
    aliases = _aliases(model)
    state = {k: v for k, v in state.items() if k not in aliases}
    expected = {k: v for k, v in model.state_dict().items() if k not in aliases}
    check_state_dict(expected, state, source)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if set(missing) - aliases or unexpected:  # cannot happen after check_state_dict; keep loading honest
        raise CheckpointError(f"weights in {source} do not match the configuration")


def check_state_dict(reference: dict, state: dict, source: str) -> None:
    """Raise :class:`CheckpointError` naming the first differences between ``state`` and ``reference``."""
    expected = {k: tuple(v.shape) for k, v in reference.items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} with wrong shape (e.g. {k}: file {got[k]} vs config {expected[k]})")
        raise CheckpointError(f"weights in {source} do not match the configuration: " + "; ".join(parts))
