"""Provenance recorded next to every result: package versions, seed, platform."""

from __future__ import annotations

import platform
import random
import sys
from datetime import datetime, timezone
from importlib import metadata

_PACKAGES = (
    "mome", "torch", "numpy", "dynamic-network-architectures", "batchgeneratorsv2", "lightning",
    "monai", "nibabel", "antspyx", "nilearn", "scipy", "safetensors",
)


def versions() -> dict[str, str]:
    """Versions of Python, the platform and every package mome's results depend on."""
    out = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu": _cpu_name()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance(seed: int | None = None, **extra) -> dict:
    """A dict to store with any result: versions, UTC time, seed and caller-given fields."""
    rec = {"created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": versions()}
    if seed is not None:
        rec["seed"] = seed
    rec.update(extra)
    return rec


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def sha256_file(path) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
