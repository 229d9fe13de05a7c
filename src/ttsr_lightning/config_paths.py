"""Where the Hydra configs live (``conf/`` at the repository root, the package installed editable),
and the config resolvers they use.

``${ttsr.launch_dir:}``: the folder the command was started from. Inside a Hydra job that is
``hydra.runtime.cwd``; where Hydra resolves a config before any job exists (a ``--multirun`` sweeper
computing ``hydra.sweep.dir``), it is the process's working directory, which then is the same folder.
``${hydra:runtime.cwd}`` itself fails there ("HydraConfig was not set").
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "conf"

if not (CONFIG_DIR / "config.yaml").is_file():  # pragma: no cover - a broken install
    raise ImportError(
        f"ttsr-lightning expects its Hydra configs at {CONFIG_DIR}; install the package from a clone "
        "with `pip install -e .` (see README)"
    )


def launch_dir() -> str:
    """The folder the command was started from (see the module docstring)."""
    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.cwd)
    return os.getcwd()


OmegaConf.register_new_resolver("ttsr.launch_dir", launch_dir, replace=True)
