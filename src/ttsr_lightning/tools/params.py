"""Parameter counts of the generator, its parts and the critic for every ablation of the paper.

``python -m ttsr_lightning.tools.params`` prints them as a Markdown table; :func:`parameter_rows`
returns them for other tables. Models are built with random VGG19 weights (counts do not depend on
them, and nothing is downloaded).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from torch import nn

from ttsr_lightning.models import Discriminator, TTSRGenerator

# The paper's ablation rows (Tables 4 and 5) as generator arguments; the texture-transformer rows
# are without CSFI, so "Base+HA+SA+LTE" and "Base+TT (C64)" are the same network.
ABLATION_SETTINGS: dict[str, dict[str, Any]] = {
    "Base": {"hard_attention": False, "soft_attention": False, "learnable_extractor": False, "csfi": False},
    "Base+HA": {"soft_attention": False, "learnable_extractor": False, "csfi": False},
    "Base+HA+SA": {"learnable_extractor": False, "csfi": False},
    "Base+HA+SA+LTE": {"csfi": False},
    "Base+TT (C64)": {"csfi": False, "n_feats": 64},
    "Base+TT (C80)": {"csfi": False, "n_feats": 80},
    "Base+TT (C96)": {"csfi": False, "n_feats": 96},
    "Base+TT+CSFI (TTSR)": {},
}

# Main-network parts by submodule name; together they cover every MainNet parameter.
MAIN_NET_PARTS: dict[str, str] = {
    "SFE": r"SFE",
    "fusion heads": r"conv\d\d_head",
    "upsampling": r"conv12|conv23",
    "residual trunks": r"RB\d\d|conv\d\d_tail",
    "CSFI": r"ex12|ex123",
    "output tail": r"merge_tail|tail",
}


def count_parameters(module: nn.Module | None, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (0 for None), optionally only those with requires_grad."""
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


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


def parameter_rows(settings: dict[str, dict[str, Any]] = ABLATION_SETTINGS) -> list[ParameterRow]:
    """One :class:`ParameterRow` per setting (default: the paper's ablations), critic at in_size 160."""
    discriminator = count_parameters(Discriminator())
    rows = []
    for setting, generator_kwargs in settings.items():
        generator = TTSRGenerator(**generator_kwargs, vgg_weights="random")
        rows.append(
            ParameterRow(
                setting=setting,
                generator_kwargs=generator_kwargs,
                generator=count_parameters(generator),
                generator_trainable=count_parameters(generator, trainable_only=True),
                main_net=count_parameters(generator.main_net),
                lte=count_parameters(generator.lte),
                lte_trainable=count_parameters(generator.lte, trainable_only=True),
                main_net_parts=main_net_parts(generator.main_net),
                discriminator=discriminator,
            )
        )
    return rows


def markdown_table(rows: list[ParameterRow]) -> str:
    """The rows as a Markdown table, counts with thousands separators."""
    header = ["setting", "generator", "trainable", "MainNet", "LTE", "LTE trainable"]
    header += [*MAIN_NET_PARTS, "discriminator"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for row in rows:
        counts = [row.generator, row.generator_trainable, row.main_net, row.lte, row.lte_trainable]
        counts += [*row.main_net_parts.values(), row.discriminator]
        lines.append(f"| {row.setting} | " + " | ".join(f"{count:,}" for count in counts) + " |")
    return "\n".join(lines)


def main() -> None:
    print(markdown_table(parameter_rows()))


if __name__ == "__main__":
    main()
