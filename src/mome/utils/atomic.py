"""Atomic outputs: write to a temporary sibling, then rename, so a failure never leaves partial files."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mome.errors import MomeError, OutputExistsError


def check_writable(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse an existing output unless ``overwrite``; return the path as :class:`Path`."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"output {path} already exists; pass --overwrite to replace it")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the same folder; on success rename it onto ``path``.

    Works for files and folders. On any exception the temporary is removed and ``path`` is untouched.
    The suffixes of ``path`` are kept on the temporary (nibabel picks the format from them).
    """
    path = check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp_path, path)
    except OSError as exc:
        _remove(tmp_path)
        if exc.errno == 28:  # ENOSPC
            raise MomeError(f"no space left on device while writing {path}; nothing was written") from exc
        raise
    except BaseException:
        _remove(tmp_path)
        raise


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str, overwrite: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically (default: replace an existing file)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text)
    return Path(path)
