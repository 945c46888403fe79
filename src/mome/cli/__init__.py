"""The ``mome`` command line: one typer app, one module per command group, heavy imports inside commands."""
