"""Where the Hydra configs live: ``conf/`` at the repository root (the package is installed editable)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "conf"

if not (CONFIG_DIR / "config.yaml").is_file():  # pragma: no cover - a broken install
    raise ImportError(
        f"ttsr-lightning expects its Hydra configs at {CONFIG_DIR}; install the package from a clone "
        "with `pip install -e .` (see README)"
    )
