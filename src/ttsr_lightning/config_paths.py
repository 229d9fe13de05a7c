"""Where the Hydra configs live, and the schemas and config resolvers they use (known once this module
is imported: every entry point and composition imports it for ``CONFIG_DIR``).

The configs ship inside the package (``ttsr_lightning/conf``), so a wheel, an editable install and a
clone find them the same way; a clone's top-level ``conf/`` is a link to that folder.

``${ttsr.launch_dir:}``: the folder the command was started from. Inside a Hydra job that is
``hydra.runtime.cwd``; where Hydra resolves a config before any job exists (a ``--multirun`` sweeper
computing ``hydra.sweep.dir``), it is the process's working directory, which then is the same folder.
``${hydra:runtime.cwd}`` itself fails there ("HydraConfig was not set").

``${ttsr.cores_up_to:N}``: N, or this machine's CPU cores when it has fewer (the cores this process may
use): loader worker counts that fit every machine the config runs on.
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ttsr_lightning.config_schema import store_schemas

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE_DIR / "conf"
# the clone this package runs from, whose git commit is recorded with every result (``src/`` layout);
# an installed wheel runs from no clone (``RUNS_FROM_CLONE`` is False) and records its version instead
REPO_ROOT = PACKAGE_DIR.parents[1]
RUNS_FROM_CLONE = PACKAGE_DIR.parent.name == "src" and (REPO_ROOT / "pyproject.toml").is_file()

if not (CONFIG_DIR / "config.yaml").is_file():  # pragma: no cover - a broken install
    raise ImportError(f"ttsr-lightning: its Hydra configs are missing from {CONFIG_DIR} (a broken install)")


def packaged_option(group: str, option: str) -> DictConfig:
    """conf/<group>/<option>.yaml's own values, its defaults list (the group's schema) left out: the
    option as its file gives it, for a config built outside Hydra's composition."""
    packaged = OmegaConf.load(CONFIG_DIR / group / f"{option}.yaml")
    assert isinstance(packaged, DictConfig)
    return OmegaConf.masked_copy(packaged, [str(key) for key in packaged if key != "defaults"])


def launch_dir() -> str:
    """The folder the command was started from (see the module docstring)."""
    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.cwd)
    return os.getcwd()


def cores_up_to(limit: int) -> int:
    """``limit``, or the CPU cores this process may use when there are fewer."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(int(limit), cores)


OmegaConf.register_new_resolver("ttsr.launch_dir", launch_dir, replace=True)
OmegaConf.register_new_resolver("ttsr.cores_up_to", cores_up_to, replace=True)
store_schemas()
