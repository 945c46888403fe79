"""Run folders: what a training run writes, how a finished run is protected, how an unfinished one resumes.

Layout (a single-network system uses the run folder itself as its member folder)::

    RUN/run.json                 system, preset, configs, options, members, "finished"
    RUN/<member>/run_config.json train config + model config + cases + spacing + seed of this network
    RUN/<member>/provenance.json package versions, seed, command, start time
    RUN/<member>/log.csv         one row per epoch
    RUN/<member>/checkpoints/last.ckpt   Lightning checkpoint (resume)
    RUN/<member>/best/, final/   model folders (config.json + model.safetensors)
    RUN/<member>/status.json     written when the member has finished

Only global rank 0 writes; every process reads the same state before training starts, so all DDP
processes take the same decision (fresh, resume, or skip a finished member).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

from mome.errors import ConfigError, OutputExistsError
from mome.utils.atomic import check_location, check_writable, write_text_atomic

RUN_FILE = "run.json"
STATUS_FILE = "status.json"
CHECKPOINT = Path("checkpoints") / "last.ckpt"


def env_global_rank() -> int:
    """This process's global rank as set by torchrun (RANK) or Lightning's launcher (NODE/LOCAL_RANK)."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    node = int(os.environ.get("NODE_RANK", 0))
    return local if node == 0 else node * 10_000 + local  # only "is it 0" matters


def is_rank_zero() -> bool:
    return env_global_rank() == 0


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_json(path: Path, data: dict) -> None:
    if is_rank_zero():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(data, indent=2, default=str))


def field_defaults(cls) -> dict:
    """A dataclass's fields that have a default, with that default (``default_factory`` called)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def differences(old: dict, new: dict, defaults: dict | None = None, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON-like dicts.

    ``defaults`` (same nesting) names the value a key had before it existed: a key missing from ``old``
    whose new value is its default is no difference, so a run left unfinished by an older mome (which did
    not record a field added since) still resumes when the new field keeps the old behaviour.
    """
    defaults = defaults or {}
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        default = defaults.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, default if isinstance(default, dict) else None, name + ".")
        elif key not in old and key in defaults and _same(b, default):
            continue
        elif a != b:
            out.append(name)
    return out


def _same(value, default) -> bool:
    # JSON turns tuples into lists: compare them as lists
    norm = (lambda v: list(v) if isinstance(v, tuple) else v)
    return norm(value) == norm(default)


def prepare_run_folder(out: Path, fingerprint: dict, overwrite: bool, defaults: dict | None = None) -> None:
    """Check (and with ``overwrite`` clear) the run folder before training (``defaults``: see :func:`differences`).

    Raises:
        OutputExistsError: ``out`` holds a finished run, or something that is not a mome run.
        ConfigError: ``out`` holds an unfinished run with another configuration.
    """
    record = read_json(out / RUN_FILE) if (out / RUN_FILE).exists() else None
    if overwrite:
        check_writable(out, overwrite=True, kind="folder")  # only a folder mome wrote is replaced
        if out.exists() and is_rank_zero():
            shutil.rmtree(out)
        return
    check_location(out)
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not out.is_dir():
        raise OutputExistsError(f"output {out} exists and is not a folder; choose another --out or pass --overwrite")
    if record is None:
        raise OutputExistsError(f"output folder {out} exists and is not a mome training run; choose another --out "
                                "or pass --overwrite to replace it")
    if record.get("finished"):
        raise OutputExistsError(f"{out} holds a finished training run (system {record.get('system')!r}); pass "
                                "--overwrite to train again or choose another --out")
    diff = differences(record.get("fingerprint", {}), fingerprint, defaults)
    if diff:
        shown = ", ".join(diff[:6]) + (f" and {len(diff) - 6} more" if len(diff) > 6 else "")
        raise ConfigError(f"{out} holds an unfinished run with a different configuration (differs in {shown}); "
                          "rerun the same command to resume it, or pass --overwrite to start again")


def member_state(folder: Path, fingerprint: dict, defaults: dict | None = None) -> str:
    """``finished``, ``resume`` (a checkpoint of this configuration exists) or ``fresh``."""
    status = read_json(folder / STATUS_FILE) if (folder / STATUS_FILE).exists() else None
    if status and status.get("finished"):
        return "finished"
    record = read_json(folder / "run_config.json") if (folder / "run_config.json").exists() else None
    same = record is not None and not differences(record.get("fingerprint", {}), fingerprint, defaults)
    if (folder / CHECKPOINT).is_file() and same:
        return "resume"
    return "fresh"


def clear_member(folder: Path, is_run_root: bool) -> None:
    """Remove a member's partial outputs before a fresh start (rank 0); the run root keeps run.json."""
    if not is_rank_zero() or not folder.exists():
        return
    for child in folder.iterdir():
        if is_run_root and child.name == RUN_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()

