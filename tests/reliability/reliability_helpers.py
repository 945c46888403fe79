"""Helpers of the reliability suite: a file-tree snapshot and an in-process CLI runner."""

from __future__ import annotations

import hashlib
from pathlib import Path


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


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``mome ARGS`` in this process: (exit status, stdout, stderr)."""
    from mome.cli.main import run

    monkeypatch.setenv("MOME_TCMALLOC", "0")
    monkeypatch.delenv("MOME_DEBUG", raising=False)
    monkeypatch.setattr("sys.argv", ["mome", *map(str, args)])
    code = 0
    try:
        run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err
