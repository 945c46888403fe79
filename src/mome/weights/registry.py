"""Registry of pretrained models (trained weights with provenance), and model resolution for inference.

A pretrained model is a model folder (``config.json`` + ``model.safetensors``, see :mod:`mome.weights.store`)
with a name, how it was trained, on what data, under which licence and where it comes from. Architecture
presets (``paper``, ``cpu``, ``tiny``) are *not* pretrained models: they build random weights.

``resolve_model`` is what ``mome predict --model`` and :func:`mome.predict` call: a folder path, a
registered name, or ``None`` for the registered default.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from mome.errors import CheckpointError, ConfigError
from mome.weights.store import CONFIG_FILE, WEIGHTS_FILE, load_model, read_model_record


@dataclass(frozen=True)
class PretrainedModel:
    """A named trained model.

    Attributes:
        name: short unique name used by ``--model NAME``.
        description: one line shown by ``mome info``.
        training: the training recipe (preset, stages, epochs, seed, command).
        data: what it was trained on.
        licence: licence of the weights (SPDX id where there is one).
        source: where the weights come from (URL, "embedded in the package", ...).
        folder: the local model folder, or a function returning it (evaluated lazily, so registering
            never touches the disk).
        default: used when no model is named; at most one registered model may be the default.
        how_to_get: what to run when the weights are absent (e.g. ``mome weights download``).
        notice: one line the CLI prints once when the model is used (e.g. "trained on synthetic data").
    """

    name: str
    description: str
    training: str
    data: str
    licence: str
    source: str
    folder: Path | str | Callable[[], Path | str]
    default: bool = False
    how_to_get: str = ""
    notice: str = ""

    def local_folder(self) -> Path:
        """The model folder on this machine (it may not exist)."""
        folder = self.folder() if callable(self.folder) else self.folder
        return Path(folder).expanduser()

    def is_available(self) -> bool:
        """True when both the config and the weights file are present."""
        folder = self.local_folder()
        return (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


_REGISTRY: dict[str, PretrainedModel] = {}


def register_pretrained(model: PretrainedModel, *, replace: bool = False) -> PretrainedModel:
    """Add ``model`` to the registry.

    Args:
        model: the entry.
        replace: allow replacing an entry of the same name.

    Raises:
        ConfigError: the name is taken (and not ``replace``), or a second default is registered.
    """
    if model.name in _REGISTRY and not replace:
        raise ConfigError(f"pretrained model {model.name!r} is already registered")
    if model.default:
        other = [m.name for m in _REGISTRY.values() if m.default and m.name != model.name]
        if other:
            raise ConfigError(f"pretrained model {other[0]!r} is already the default; cannot make "
                              f"{model.name!r} the default too")
    _REGISTRY[model.name] = model
    return model


def unregister_pretrained(name: str) -> None:
    """Remove an entry (no error when absent); used by tests and plugins."""
    _REGISTRY.pop(name, None)


def list_pretrained() -> list[PretrainedModel]:
    """Every registered pretrained model, in registration order."""
    return list(_REGISTRY.values())


def get_pretrained(name: str) -> PretrainedModel:
    """The entry named ``name``; :class:`ConfigError` listing the known names otherwise."""
    if name not in _REGISTRY:
        raise ConfigError(_unknown_message(name))
    return _REGISTRY[name]


def default_pretrained() -> PretrainedModel | None:
    """The registered default model, or ``None``."""
    return next((m for m in _REGISTRY.values() if m.default), None)


def resolve_model_folder(name_or_dir: str | os.PathLike | None) -> tuple[Path, PretrainedModel | None]:
    """Find the model folder behind ``--model`` without loading it.

    Args:
        name_or_dir: a registered name, a model folder, or ``None`` for the default model.

    Returns:
        ``(folder, registry entry or None when a folder was given)``.

    Raises:
        ConfigError: no default installed, or an unknown name.
        CheckpointError: a registered model whose weights are not on this machine, or a folder path
            that does not exist.
    """
    if name_or_dir is None:
        entry = default_pretrained()
        if entry is None:
            raise ConfigError("no default model is installed; pass --model DIR (a trained model folder "
                              "written by mome) or a registered model name (see `mome info`)")
        return _entry_folder(entry), entry
    text = str(name_or_dir)
    if text in _REGISTRY:
        entry = _REGISTRY[text]
        return _entry_folder(entry), entry
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"model {path} is a file; --model takes a model folder (with {CONFIG_FILE} "
                                  f"and {WEIGHTS_FILE}) or a registered model name")
        return path, None
    if _looks_like_path(text):
        raise CheckpointError(f"model folder {path} does not exist")
    raise ConfigError(_unknown_message(text))


def resolve_model(name_or_dir: str | os.PathLike | None,
                  map_location: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Load the model behind ``--model``.

    Args:
        name_or_dir: a registered name, a model folder, or ``None`` for the default model.
        map_location: device the weights are loaded onto.

    Returns:
        ``(model in eval mode, record)``; the record is the folder's ``config.json`` (config,
        provenance, training metadata such as ``patch_size`` and ``spacing_mm``) plus
        ``record["resolved"] = {"name", "folder", "notice"}`` saying which model was used.
    """
    folder, entry = resolve_model_folder(name_or_dir)
    record = read_model_record(folder)
    model = load_model(folder, map_location=map_location).eval()
    record = dict(record)
    record["resolved"] = {
        "name": entry.name if entry else None,
        "folder": str(folder),
        "notice": entry.notice if entry else "",
    }
    return model, record


def _entry_folder(entry: PretrainedModel) -> Path:
    folder = entry.local_folder()
    if not entry.is_available():
        how = entry.how_to_get or f"put its {CONFIG_FILE} and {WEIGHTS_FILE} in {folder}"
        raise CheckpointError(f"the weights of pretrained model {entry.name!r} are not on this machine "
                              f"(expected in {folder}); to get them: {how}")
    return folder


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.startswith((".", "~"))


def _unknown_message(name: str) -> str:
    known = ", ".join(m.name for m in _REGISTRY.values()) or "none registered"
    msg = f"unknown model {name!r}; known pretrained models: {known}. A model folder path is also accepted"
    try:
        from mome.model.presets import list_presets

        if name in {p.name for p in list_presets()}:
            msg += (f" ({name!r} is an architecture preset with random weights, not a trained model; "
                    "train one with mome or pass its folder)")
    except ImportError:  # pragma: no cover - presets always importable in an installed mome
        pass
    return msg


# the model shipped inside the package registers itself (at the end: it needs the definitions above)
import mome.weights.embedded  # noqa: E402,F401
