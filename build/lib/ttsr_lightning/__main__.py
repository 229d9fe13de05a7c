"""`python -m ttsr_lightning [overrides]`: train (and test) with the Hydra config in conf/."""

from __future__ import annotations

from omegaconf import DictConfig

from ttsr_lightning.cli import hydra_entry_point
from ttsr_lightning.train import train


def train_for_sweeps(cfg: DictConfig) -> float | None:
    """:func:`train`, returning what sweepers optimise: the validation PSNR of the last epoch."""
    value = train(cfg).get("val/psnr")
    return None if value is None else float(value)


main = hydra_entry_point(train_for_sweeps, "config")

if __name__ == "__main__":
    main()
