"""Outputs: checked before any work, written atomically, replaced only when mome wrote them.

* :func:`check_writable` is the one early output check every command runs before its long work: the
  output must not exist (unless ``overwrite``), its folder must be creatable and writable (not under a
  file, not on a read-only or pseudo file system), and ``--overwrite`` replaces a folder only when mome
  recognises it as its own output (:func:`is_mome_output`), never a user's folder.
* :func:`atomic_path` writes to a temporary sibling, then renames, so a failure never leaves partial files;
  every ``OSError`` during a write becomes one :class:`~mome.errors.OutputError` line naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mome.errors import OutputError, OutputExistsError

#: written into every output folder mome creates, so that ``--overwrite`` can tell mome's folders from others
MARKER = ".mome-output"
#: files that make a folder recognisably mome's (written by versions before the marker existed, too)
OWN_FILES = (MARKER, "run.json", "benchmark.json", "collection.json", "provenance.json", "stats.csv",
             "model.safetensors", "preprocess.json", "eval.json")

_temporaries: set[Path] = set()


def is_mome_output(folder: Path) -> bool:
    """True when ``folder`` holds a file only mome writes (:data:`OWN_FILES`), or is a labels folder of a
    collection import (every file a ``*_lesion-*.nii.gz``)."""
    if any((folder / name).exists() for name in OWN_FILES):
        return True
    names = [p.name for p in folder.iterdir()]
    return bool(names) and all("_lesion-" in n and n.endswith(".nii.gz") for n in names)


def mark_output_folder(folder: str | os.PathLike) -> None:
    """Write :data:`MARKER` into a folder mome created (idempotent)."""
    marker = Path(folder) / MARKER
    if not marker.exists():
        marker.write_text("written by mome; --overwrite may replace this folder\n")


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def check_location(path: str | os.PathLike) -> Path:
    """Check that ``path`` could be created: its nearest existing ancestor is a writable folder.

    The check writes and removes one empty probe file in that folder, the only test that catches
    read-only mounts and pseudo file systems (``/proc``) for every user, root included.

    Raises:
        OutputError: an ancestor is a file, or the folder cannot be written (with the system's reason).
    """
    path = Path(path)
    anc = path.parent
    while not anc.exists() and anc != anc.parent:
        if anc.is_symlink():  # a dangling link
            raise OutputError(f"cannot write {path}: {anc} is a broken symbolic link")
        anc = anc.parent
    if not anc.is_dir():
        raise OutputError(f"cannot write {path}: {anc} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".mome-probe.", dir=anc)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {anc} is not writable ({_reason(exc)})") from exc
    return path


def check_writable(path: str | os.PathLike, overwrite: bool = False, kind: str | None = None) -> Path:
    """The early output check: refuse an existing output unless ``overwrite``, then :func:`check_location`.

    Args:
        path: the output file or folder.
        overwrite: replace an existing output (a folder only when it is mome's own, :func:`is_mome_output`).
        kind: ``"file"`` or ``"folder"`` when the caller knows which it will write (an existing output of
            the other kind is refused even with ``overwrite``).

    Raises:
        OutputExistsError: the output exists and ``overwrite`` is False, or it is a foreign folder.
        OutputError: the output cannot be created there.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise OutputExistsError(f"output {path} already exists; pass --overwrite to replace it")
        if path.is_dir() and not path.is_symlink():
            if kind == "file":
                raise OutputExistsError(f"output {path} is a folder; expected a file name")
            if any(path.iterdir()) and not is_mome_output(path):
                raise OutputExistsError(
                    f"output folder {path} holds files mome did not write; --overwrite only replaces mome's own "
                    "outputs, so choose another folder (or empty this one)")
        elif kind == "folder":
            raise OutputExistsError(f"output {path} is a file; expected a folder")
    return check_location(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the same folder; on success rename it onto ``path``.

    Works for files and folders (a folder gets :data:`MARKER`). On any exception the temporary is
    removed and ``path`` is untouched. The suffixes of ``path`` are kept on the temporary (nibabel picks
    the format from them).

    Raises:
        OutputError: the write failed (disk full, permissions, read-only...): one line naming ``path``.
    """
    path = check_writable(path, overwrite)
    created = [a for a in [path.parent, *path.parent.parents] if not a.exists()]  # removed again on failure
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder {path.parent}: {_reason(exc)}") from exc
    suffix = "".join(path.suffixes)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_reason(exc)}") from exc
    os.close(fd)
    os.unlink(tmp)
    tmp_path = Path(tmp)
    _temporaries.add(tmp_path)
    try:
        yield tmp_path
        if tmp_path.is_dir():
            mark_output_folder(tmp_path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp_path, path)
    except OSError as exc:
        _remove(tmp_path)
        remove_empty_folders(created)
        if exc.errno == errno.ENOSPC:
            raise OutputError(f"no space left on device while writing {path}; nothing was written") from exc
        raise OutputError(f"cannot write {path}: {_reason(exc)}; nothing was written") from exc
    except BaseException:
        _remove(tmp_path)
        remove_empty_folders(created)
        raise
    finally:
        _temporaries.discard(tmp_path)


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove the folders an interrupted write created (innermost first), where they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink(missing_ok=True)


def remove_temporaries() -> None:
    """Remove every temporary output being written (the CLI's SIGTERM handler)."""
    for p in list(_temporaries):
        _remove(p)
        _temporaries.discard(p)


def write_text_atomic(path: str | os.PathLike, text: str, overwrite: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically (default: replace an existing file)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text)
    return Path(path)
