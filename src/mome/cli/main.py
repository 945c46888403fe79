"""Entry point of the ``mome`` command. Every :class:`~mome.errors.MomeError` becomes one line + exit 1."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="mome",
    help="MoME: universal brain-lesion segmentation with a Mixture of Modality Experts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)



@app.callback()
def _root(
    no_tcmalloc: bool = typer.Option(
        False, "--no-tcmalloc",
        help="do not re-run with tcmalloc preloaded (default: preloaded when installed; faster on CPU; "
             "also MOME_TCMALLOC=0)"),
) -> None:
    """MoME: universal brain-lesion segmentation with a Mixture of Modality Experts."""
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

_info.register(app)
_evaluate.register(app)
_weights.register(app)
_predict.register(app)
_collection.register(app)
_train.register(app)
_preprocess.register(app)
_synth.register(app)
_benchmark.register(app)


def main() -> None:
    """Console-script entry (``mome``): preload tcmalloc by re-executing once, then :func:`run`.

    Only this process-level entry re-executes; :func:`run` never does, so calling it in-process (tests,
    other programs) cannot replace the caller's process.
    """
    from mome.utils.tcmalloc import reexec_with_tcmalloc

    reexec_with_tcmalloc()  # returns when tcmalloc is loaded already, disabled or not installed
    run()


def run() -> None:
    """Run the app, turning user errors into a one-line message and exit code 1."""
    from mome.errors import MomeError

    try:
        app()
    except MomeError as exc:
        print(f"mome: error: {exc}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 1))
    except KeyboardInterrupt:
        print("mome: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
