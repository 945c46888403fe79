"""SIGTERM / SIGINT for the CLI: temporary outputs removed, one line, a conventional exit status.

Outside training, SIGTERM and SIGINT remove every temporary output being written
(:mod:`mome.utils.atomic`) and raise :class:`~mome.errors.Terminated` / :class:`~mome.errors.Interrupted`
(``BaseException`` subclasses: no ``except Exception`` swallows them, and click does not turn them into
"Aborted!"). During ``trainer.fit`` the handler stands aside
(:func:`deferred`): Lightning's own SIGTERM handler finishes the step and the run folder keeps its last
complete epoch for resuming (``TrainingInterrupted``).
"""

from __future__ import annotations

import contextlib
import signal
import threading

from mome.errors import Interrupted, Terminated
from mome.utils.atomic import remove_temporaries

_deferred = 0


def _on_sigterm(signum, frame) -> None:  # noqa: ARG001 - the signal API
    if _deferred:
        return
    remove_temporaries()
    raise Terminated()


def _on_sigint(signum, frame) -> None:  # noqa: ARG001 - the signal API
    if _deferred:
        raise KeyboardInterrupt  # Lightning's graceful shutdown
    remove_temporaries()
    raise Interrupted()


@contextlib.contextmanager
def handled():
    """Install the handlers for the block and restore the previous ones after it (so that calling the CLI
    in-process, as the tests do, leaves the caller's handlers alone). Main thread only; elsewhere a no-op,
    as ``signal.signal`` requires."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig, handler in ((signal.SIGTERM, _on_sigterm), (signal.SIGINT, _on_sigint)):
        if previous[sig] is not signal.SIG_IGN:  # an ignored signal stays ignored (nohup, background jobs)
            signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def deferred():
    """Let another handler (Lightning's) deal with SIGTERM inside the block."""
    global _deferred
    _deferred += 1
    try:
        yield
    finally:
        _deferred -= 1
