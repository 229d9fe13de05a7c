"""How a result was obtained: the code's commit and the models' parameter counts."""

from __future__ import annotations

import subprocess
from importlib import metadata

from torch import nn

from ttsr_lightning.config_paths import REPO_ROOT, RUNS_FROM_CLONE


def git_commit() -> str:
    """The repository's commit, with ``-dirty`` when the work tree has changes; ``unknown`` outside git;
    for an installed package (no clone), ``unknown (ttsr-lightning <version>, installed)``."""
    if not RUNS_FROM_CLONE:
        try:
            version = metadata.version("ttsr-lightning")
        except metadata.PackageNotFoundError:
            version = "?"
        return f"unknown (ttsr-lightning {version}, installed)"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def count_parameters(module: nn.Module | None, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (0 for None), optionally only those with requires_grad."""
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_counts(generator: nn.Module, discriminator: nn.Module | None = None) -> dict[str, int]:
    """Parameters of the generator, its main net, its trainable LTE and the critic (``params/*`` keys)."""
    return {
        "params/generator": count_parameters(generator),
        "params/main_net": count_parameters(getattr(generator, "main_net", None)),
        "params/lte_trainable": count_parameters(getattr(generator, "lte", None), trainable_only=True),
        "params/discriminator": count_parameters(discriminator),
    }
