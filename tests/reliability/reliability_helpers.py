"""Helpers of the reliability suite: a file-tree snapshot and an in-process CLI runner."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cli_runner import run_cli  # noqa: F401  (re-exported for the reliability tests)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones included) -> a digest of its bytes (a link: its target)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = "link"
        elif p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[str(p.relative_to(root)) + "/"] = "dir"
    return out
