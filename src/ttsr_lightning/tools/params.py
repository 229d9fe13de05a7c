"""Parameter counts of the generator, its parts and the critic for every model the paper ablates.

``python -m ttsr_lightning.tools.params`` prints them as a Markdown table; :func:`parameter_rows`
returns them for other tables. The settings are read from the experiment configs
(``conf/experiment/<name>.yaml``, :func:`experiment_settings`), so the table counts exactly the models
the experiments train. Models are built with random VGG19 weights (counts do not depend on them, and
nothing is downloaded). The paper counts in units of 2^20 ("M"): see :data:`PAPER_UNIT`. An
experiment of another generator (:mod:`ttsr_lightning.models.interface`) keeps its ``_target_`` and
gets the generator counts, its MainNet and LTE columns counting only parts of those names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from ttsr_lightning.config_paths import CONFIG_DIR
from ttsr_lightning.markdown import markdown_table
from ttsr_lightning.models import Discriminator, TTSRGenerator
from ttsr_lightning.provenance import count_parameters

# The paper's parameter unit: its Table 3 quotes generator counts (LTE included) divided by 2^20.
PAPER_UNIT = 2**20

# Paper rows -> the experiment that trains that model. Table 2's last row and Table 3's first row are
# one model (one run); Table 3's CSFI row is TTSR-rec.
PAPER_ROWS: dict[str, str] = {
    "Base": "ablation_base",
    "Base+HA": "ablation_ha",
    "Base+HA+SA": "ablation_ha_sa",
    "Base+HA+SA+LTE = Base+TT (C64)": "ablation_tt",
    "Base+TT (C80)": "ablation_tt_c80",
    "Base+TT (C96)": "ablation_tt_c96",
    "Base+TT+CSFI = TTSR": "ttsr_rec",
}
# Constructor arguments that choose an initialisation or implementation, not the architecture.
_NOT_ARCHITECTURE = ("_target_", "vgg_weights", "search_transfer", "batched_extractor", "relevance_kernel")


def experiment_settings(rows: dict[str, str] = PAPER_ROWS) -> dict[str, dict[str, Any]]:
    """The generator architecture of each experiment (label -> TTSRGenerator arguments, or another
    generator's ``_target_`` and arguments), composed from its config exactly as
    ``python -m ttsr_lightning +experiment=<name>`` would."""
    settings = {}
    for label, experiment in rows.items():
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[f"+experiment={experiment}"])
        generator = OmegaConf.to_container(cfg.model.generator)
        assert isinstance(generator, dict)
        if str(generator.get("_target_", "")).rsplit(".", 1)[-1] != TTSRGenerator.__name__:
            settings[label] = {str(k): v for k, v in generator.items()}
            continue
        settings[label] = {str(k): v for k, v in generator.items() if k not in _NOT_ARCHITECTURE}
    GlobalHydra.instance().clear()
    return settings


# Main-network parts by submodule name; together they cover every MainNet parameter.
MAIN_NET_PARTS: dict[str, str] = {
    "SFE": r"SFE",
    "fusion heads": r"conv\d\d_head",
    "upsampling": r"conv12|conv23",
    "residual trunks": r"RB\d\d|conv\d\d_tail",
    "CSFI": r"ex12|ex123",
    "output tail": r"merge_tail|tail",
}


def main_net_parts(main_net: nn.Module) -> dict[str, int]:
    """Parameters per part of :data:`MAIN_NET_PARTS`; a submodule that fits no part is an error."""
    parts = dict.fromkeys(MAIN_NET_PARTS, 0)
    for name, child in main_net.named_children():
        part = next((part for part, pattern in MAIN_NET_PARTS.items() if re.fullmatch(pattern, name)), None)
        if part is None:
            if count_parameters(child):
                raise ValueError(f"MainNet submodule {name!r} fits none of the parts {list(MAIN_NET_PARTS)}")
            continue
        parts[part] += count_parameters(child)
    return parts


@dataclass(frozen=True)
class ParameterRow:
    """Parameter counts of one ablation setting (generator built with the row's ``generator_kwargs``)."""

    setting: str
    generator_kwargs: dict[str, Any]
    generator: int
    generator_trainable: int
    main_net: int
    lte: int
    lte_trainable: int
    main_net_parts: dict[str, int]
    discriminator: int


def parameter_rows(settings: dict[str, dict[str, Any]] | None = None) -> list[ParameterRow]:
    """One :class:`ParameterRow` per setting (default: :func:`experiment_settings`), critic at in_size 160."""
    settings = experiment_settings() if settings is None else settings
    discriminator = count_parameters(Discriminator())
    rows = []
    for setting, generator_kwargs in settings.items():
        generator: nn.Module
        if "_target_" in generator_kwargs:
            generator = instantiate(generator_kwargs, _convert_="all")
        else:
            generator = TTSRGenerator(**generator_kwargs, vgg_weights="random")
        main_net, lte = getattr(generator, "main_net", None), getattr(generator, "lte", None)
        parts = main_net_parts(main_net) if main_net is not None else dict.fromkeys(MAIN_NET_PARTS, 0)
        rows.append(
            ParameterRow(
                setting=setting,
                generator_kwargs=generator_kwargs,
                generator=count_parameters(generator),
                generator_trainable=count_parameters(generator, trainable_only=True),
                main_net=count_parameters(main_net),
                lte=count_parameters(lte),
                lte_trainable=count_parameters(lte, trainable_only=True),
                main_net_parts=parts,
                discriminator=discriminator,
            )
        )
    return rows


def parameters_table(rows: list[ParameterRow]) -> str:
    """The rows as a Markdown table, counts with thousands separators."""
    header = ["setting", "generator", "M (2^20)", "trainable", "MainNet", "LTE", "LTE trainable"]
    header += [*MAIN_NET_PARTS, "discriminator"]
    cells = []
    for row in rows:
        counts = [row.generator_trainable, row.main_net, row.lte, row.lte_trainable]
        counts += [*row.main_net_parts.values(), row.discriminator]
        cells.append(
            (
                row.setting,
                f"{row.generator:,}",
                f"{row.generator / PAPER_UNIT:.2f}M",
                *(f"{n:,}" for n in counts),
            )
        )
    return markdown_table(header, cells, "-" + "r" * (len(header) - 1), dashes=3)


def main() -> None:
    print(parameters_table(parameter_rows()))


if __name__ == "__main__":
    main()
