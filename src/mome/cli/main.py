"""Entry point of the ``mome`` command.

Exit statuses: 0 success; 1 a user error (:class:`~mome.errors.MomeError`, one line ``mome: error: ...``);
2 a usage error (unknown option, missing argument); 70 an internal error (a bug: one line, the traceback
with ``--debug`` or ``MOME_DEBUG=1``); 130 interrupted (Ctrl-C); 143 stopped by SIGTERM. Temporary
outputs are removed in every case.
"""

from __future__ import annotations

import sys

import typer

#: exit status of an unexpected exception (sysexits.h EX_SOFTWARE)
INTERNAL_ERROR = 70
_debug = False

app = typer.Typer(
    name="mome",
    help="MoME: universal brain-lesion segmentation with a Mixture of Modality Experts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)



@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="print the traceback of an internal error (also MOME_DEBUG=1)"),
    no_tcmalloc: bool = typer.Option(
        False, "--no-tcmalloc",
        help="do not re-run with tcmalloc preloaded (default: preloaded when installed; faster on CPU; "
             "also MOME_TCMALLOC=0)"),
) -> None:
    """MoME: universal brain-lesion segmentation with a Mixture of Modality Experts."""
    global _debug
    _debug = debug
    # the flag is acted on in run(), before any heavy import; it is declared here for --help


# Command groups register themselves here (one import + one line each).
from mome.cli import info as _info  # noqa: E402
from mome.cli import benchmark as _benchmark  # noqa: E402
from mome.cli import evaluate as _evaluate  # noqa: E402
from mome.cli import weights as _weights  # noqa: E402
from mome.cli import predict as _predict  # noqa: E402
from mome.cli import collection as _collection  # noqa: E402
from mome.cli import train as _train  # noqa: E402
from mome.cli import preprocess as _preprocess  # noqa: E402
from mome.cli import synth as _synth  # noqa: E402
from mome.cli import bids as _bids  # noqa: E402

_info.register(app)
_evaluate.register(app)
_weights.register(app)
_predict.register(app)
_collection.register(app)
_train.register(app)
_preprocess.register(app)
_synth.register(app)
_benchmark.register(app)
_bids.register(app)


def main() -> None:
    """Console-script entry (``mome``): preload tcmalloc by re-executing once, then :func:`run`.

    Only this process-level entry re-executes; :func:`run` never does, so calling it in-process (tests,
    other programs) cannot replace the caller's process.
    """
    from mome.utils.tcmalloc import reexec_with_tcmalloc

    reexec_with_tcmalloc()  # returns when tcmalloc is loaded already, disabled or not installed
    run()


def run() -> None:
    """Run the app: user errors, interrupts and bugs each end in one line and their exit status."""
    import os

    from mome.errors import Interrupted, MomeError, Terminated
    from mome.utils import signals
    from mome.utils.atomic import remove_temporaries

    try:
        with signals.handled():
            app()  # click's standalone mode: usage errors print click's message and exit 2
    except MomeError as exc:
        print(f"mome: error: {exc}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 1))
    except (KeyboardInterrupt, Interrupted):
        remove_temporaries()
        print("mome: interrupted; nothing partial was left", file=sys.stderr)
        sys.exit(Interrupted.exit_code)
    except Terminated:
        print("mome: stopped by SIGTERM; nothing partial was left", file=sys.stderr)
        sys.exit(Terminated.exit_code)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug, never a bare traceback
        remove_temporaries()
        if _debug or os.environ.get("MOME_DEBUG", "") not in ("", "0"):
            import traceback

            traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"mome: internal error: {type(exc).__name__}{': ' + first if first else ''}; rerun with --debug "
              "for the traceback and report it", file=sys.stderr)
        sys.exit(INTERNAL_ERROR)


if __name__ == "__main__":
    main()
