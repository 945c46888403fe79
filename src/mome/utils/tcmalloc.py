"""Preload tcmalloc for the ``mome`` command (faster CPU training and inference, measured).

glibc's allocator returns and re-requests the large, short-lived activation buffers of 3D U-Nets
from the kernel on every call; tcmalloc keeps them. Measured on this project's 2-core machines:
1.7-2.6x faster training steps, and faster CPU inference (``docs/performance.md``). An allocator can
only be swapped before the process starts, so the CLI re-executes itself once with
``LD_PRELOAD=<libtcmalloc_minimal.so.4>`` when the library is installed (Debian/Ubuntu:
``apt-get install libtcmalloc-minimal4``) and not already loaded.

Disable with ``mome --no-tcmalloc ...`` or the environment variable ``MOME_TCMALLOC=0``.

Not preloaded for ``mome predict`` and ``mome bids`` when they will run OpenVINO (installed and the backend
not ``torch``): OpenVINO aborts (``free(): invalid pointer``) in a process with a preloaded allocator
(openvinotoolkit/openvino issues 29025 and 28551; reproduced here with tcmalloc and openvino 2026.4), and its
own allocations do not need it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

DISABLE_FLAG = "--no-tcmalloc"
ENV_SWITCH = "MOME_TCMALLOC"  # "0", "false", "no" or "off" disable the preload
_GUARD = "MOME_TCMALLOC_REEXEC"  # set in the re-executed process so it never loops
LIBRARY_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
SEARCH_DIRS = ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
               "/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")


def find_tcmalloc(search_dirs: Sequence[str | os.PathLike] = SEARCH_DIRS) -> str | None:
    """Absolute path of an installed tcmalloc shared library, or ``None``.

    Looks in the usual library folders first, then asks ``ldconfig -p``.
    """
    for name in LIBRARY_NAMES:
        for folder in search_dirs:
            path = Path(folder) / name
            if path.is_file():
                return str(path)
    try:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for name in LIBRARY_NAMES:
        for line in listing.splitlines():
            if line.strip().startswith(name) and "=>" in line:
                path = line.split("=>", 1)[1].strip()
                if Path(path).is_file():
                    return path
    return None


def is_disabled(argv: Sequence[str], env: Mapping[str, str]) -> bool:
    """True when the user turned the preload off (flag or environment variable)."""
    return DISABLE_FLAG in argv or env.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off")


OPENVINO_COMMANDS = ("predict", "bids")  # the commands whose predictors default to backend auto


def may_run_openvino(argv: Sequence[str], env: Mapping[str, str]) -> bool:
    """Whether the command line runs a predictor that will use OpenVINO: ``mome predict`` or ``mome bids``,
    openvino installed, and the backend (``--backend``, else ``$MOME_BACKEND``, else ``auto``) not ``torch``."""
    if not any(a in OPENVINO_COMMANDS for a in argv):
        return False
    backend = env.get("MOME_BACKEND", "").strip() or "auto"
    for i, a in enumerate(argv):
        if a == "--backend" and i + 1 < len(argv):
            backend = argv[i + 1]
        elif a.startswith("--backend="):
            backend = a.split("=", 1)[1]
    return backend != "torch" and _openvino_installed()


def _openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None  # finds the package without importing it


def preload_plan(argv: Sequence[str], env: Mapping[str, str], library: str | None) -> dict[str, str] | None:
    """The environment to re-execute with, or ``None`` when no re-execution is wanted.

    No re-execution when: disabled, no library, not Linux, tcmalloc already in ``LD_PRELOAD``,
    this process is already the re-executed one, or the command will run OpenVINO (:func:`may_run_openvino`).
    """
    if library is None or not sys.platform.startswith("linux") or is_disabled(argv, env):
        return None
    if may_run_openvino(argv, env):
        return None
    if env.get(_GUARD) or "tcmalloc" in env.get("LD_PRELOAD", ""):
        return None
    new_env = dict(env)
    new_env["LD_PRELOAD"] = ":".join(p for p in (library, env.get("LD_PRELOAD", "")) if p)
    new_env[_GUARD] = "1"
    return new_env


def is_mome_command(argv: Sequence[str]) -> bool:
    """Whether the interpreter command line (``sys.orig_argv``) runs the ``mome`` command itself
    (console script or ``python -m mome...``), not e.g. pytest calling the entry point in-process."""
    if len(argv) < 2:
        return False
    if argv[1] == "-m":
        return len(argv) > 2 and argv[2].split(".")[0] == "mome"
    return Path(argv[1]).name.startswith("mome")


def reexec_with_tcmalloc() -> None:
    """Replace this process by itself with tcmalloc preloaded, when :func:`preload_plan` says so.

    Call it first thing in the console-script entry point (before torch is imported). Returns
    normally when nothing is to be done or the re-execution fails (the command then runs as is).
    """
    argv = list(getattr(sys, "orig_argv", [])) or [sys.executable, *sys.argv]
    if not is_mome_command(argv):
        return
    env = preload_plan(argv[1:], os.environ, find_tcmalloc())
    if env is None:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *argv[1:]], env)
    except OSError:
        return


def preloaded_allocator() -> str | None:
    """The name of a replacement malloc (tcmalloc, jemalloc, mimalloc) loaded in this process, or ``None``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for name in ("tcmalloc", "jemalloc", "mimalloc"):
        if f"lib{name}" in maps:
            return name
    return None
