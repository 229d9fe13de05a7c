"""The errors a user can cause or meet, by kind; the command line maps each kind to one line and an exit
status (see :mod:`ttsr_lightning.cli`). Dataset problems are :mod:`ttsr_lightning.data.errors`."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value (or command-line argument) that cannot work; the message names its key."""


class PreflightError(ConfigError):
    """Every problem the pre-flight found before a run started, one line each (the command line prints
    each as its own ``error:`` line)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class CheckpointError(ValueError):
    """A weights file that cannot be used; the one-line message names the file and what is wrong."""


class NonFiniteError(RuntimeError):
    """A loss term, the critic loss or a gradient became NaN or infinite during training."""


class Preempted(RuntimeError):
    """SIGTERM (a scheduler's time limit, a preemption, a requeue) stopped training; the checkpoint to
    resume from was written first. The message says where."""


class RehearsalFailed(RuntimeError):
    """A step of a rehearsal (``debug=rehearse``) failed; the message names it and the log that shows why."""
