"""`python -m ttsr_lightning [overrides]`: train (and test) with the Hydra config in conf/."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ttsr_lightning.config_paths import CONFIG_DIR
from ttsr_lightning.train import train


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    # sweepers optimise the returned value: validation PSNR of the last epoch
    value = metrics.get("val/psnr")
    return None if value is None else float(value)


if __name__ == "__main__":
    main()
