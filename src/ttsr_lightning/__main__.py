"""`python -m ttsr_lightning [overrides]`: train (and test) with the Hydra config in conf/."""

from __future__ import annotations

from omegaconf import DictConfig

from ttsr_lightning.cli import hydra_entry_point
from ttsr_lightning.rehearsal import rehearse
from ttsr_lightning.train import train


def train_for_sweeps(cfg: DictConfig) -> float | None:
    """:func:`train`, returning what sweepers optimise: the validation PSNR of the last epoch; with
    ``debug=rehearse``, the rehearsal of that training (:mod:`ttsr_lightning.rehearsal`) instead."""
    if cfg.get("rehearsal") is not None:
        rehearse(cfg)
        return None
    value = train(cfg).get("val/psnr")
    return None if value is None else float(value)


# debug=tiny / debug=rehearse shorten whatever the rest of the command line configures (conf/debug/)
main = hydra_entry_point(train_for_sweeps, "config", applied_last_groups=("debug",))

if __name__ == "__main__":
    main()
