"""``mome ARGS`` run in the test process (shared by the CLI tests; ``tests/`` is on ``sys.path`` through
pytest's rootdir conftest)."""

from __future__ import annotations


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``mome ARGS`` in this process: (exit status, stdout, stderr)."""
    from mome.cli.main import run

    monkeypatch.setenv("MOME_TCMALLOC", "0")  # run() may otherwise re-exec the interpreter (pytest!)
    monkeypatch.delenv("MOME_DEBUG", raising=False)
    monkeypatch.setattr("sys.argv", ["mome", *map(str, args)])
    code = 0
    try:
        run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err
