"""The exception hierarchy behind every error a user can cause.

The CLI turns any :class:`MomeError` into one line on stderr and exit code 1 (or the error's
``exit_code``, e.g. 143 for a run stopped by SIGTERM); library users can catch
the specific subclass. Programming errors (bugs) are not wrapped and keep their traceback.
"""

from __future__ import annotations


class MomeError(Exception):
    """Base class of every user-facing error raised by mome."""


class InputError(MomeError):
    """An input file or tensor is missing, unreadable, or has the wrong shape, geometry or values."""


class ShapeError(InputError):
    """A tensor or image has a shape the model or operation cannot take."""


class ConfigError(MomeError):
    """A configuration, preset or model name is unknown or inconsistent."""


class CheckpointError(MomeError):
    """A weights file is missing, corrupt, tampered with, or does not match its configuration."""


class DataError(MomeError):
    """A collection manifest or dataset is invalid (missing files, mismatched geometry, bad labels...)."""


class OutputExistsError(MomeError):
    """An output already exists and ``--overwrite`` was not given."""


class NotImplementedFeatureError(MomeError):
    """A documented feature that this version does not implement."""


class TrainingInterrupted(MomeError):
    """Training was stopped by SIGTERM; the run folder keeps its last complete epoch for resuming."""

    exit_code = 143  # 128 + SIGTERM, as a shell reports a process ended by it


class OutputError(MomeError):
    """An output cannot be written there (under a file, read-only, no space left...)."""


class Terminated(BaseException):
    """SIGTERM arrived outside training; a ``BaseException`` so that no ``except Exception`` swallows it.

    Raised by the CLI's signal handler after it removed the temporary outputs; the CLI prints one line
    and exits 143.
    """

    exit_code = 143


class Interrupted(BaseException):
    """SIGINT (Ctrl-C) outside training, raised by the CLI's handler instead of ``KeyboardInterrupt`` (which
    click would turn into "Aborted!" and status 1); the CLI prints one line and exits 130."""

    exit_code = 130
