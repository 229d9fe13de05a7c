"""The ``lpips`` setting of evaluate, score and training runs: which LPIPS network (AlexNet v0.1) to
measure with, found where :mod:`ttsr_lightning.pretrained` looks, or why there is none. The network
itself is :class:`ttsr_lightning.models.lpips.LPIPS`."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch

from ttsr_lightning.errors import ConfigError
from ttsr_lightning.models.lpips import LPIPS
from ttsr_lightning.pretrained import (
    ALEXNET,
    find_weights_file,
    load_weights_file,
    lpips_heads_file,
    lpips_heads_places,
)

LpipsSetting = bool | Literal["auto"] | str | os.PathLike[str]


def lpips_from_files(alexnet_file: str | os.PathLike[str], heads_file: str | os.PathLike[str]) -> LPIPS:
    """The network with torchvision's AlexNet state dict and the LPIPS heads (``alex.pth``) loaded
    from these (already checked) files."""
    network = LPIPS()
    network.load_alexnet(load_weights_file(Path(alexnet_file), ALEXNET))
    heads = torch.load(heads_file, map_location="cpu", weights_only=True)
    if not isinstance(heads, Mapping):
        raise ValueError(
            f"LPIPS heads file {heads_file} holds a {type(heads).__name__}, expected a state dict"
        )
    network.load_heads(heads)
    return network


def parse_lpips_setting(setting: LpipsSetting) -> bool | Literal["auto"] | Path:
    """``true`` / ``false`` (also as strings), ``"auto"``, or a path to the AlexNet weights file."""
    if isinstance(setting, bool) or setting == "auto":
        return setting  # type: ignore[return-value]
    if isinstance(setting, str) and setting.lower() in ("true", "false"):
        return setting.lower() == "true"
    if not isinstance(setting, str | os.PathLike) or not str(setting):
        raise ConfigError(
            f"lpips: expected auto, true, false or a path to {ALEXNET.file_name}; got {setting!r}"
        )
    return Path(setting)


def load_lpips(setting: LpipsSetting) -> tuple[LPIPS | None, str]:
    """The LPIPS network a setting asks for, and one line saying what it is or why there is none.

    - ``false``: no LPIPS;
    - ``"auto"``: the AlexNet weights named by ``$TTSR_ALEXNET_WEIGHTS`` or in the torch.hub cache;
      without them (or without the heads) LPIPS is skipped with one warning;
    - ``true``: the same places, else downloaded into the cache; ConfigError (one line, naming where it
      looked) when that fails;
    - a path: that AlexNet file (sha256-checked).

    A named file that is missing or fails its hash is a ConfigError in every case.
    """
    choice = parse_lpips_setting(setting)
    if choice is False:
        return None, "off (lpips=false)"
    heads = lpips_heads_file()
    shown = "true" if choice is True else str(choice)
    try:
        if heads is None:
            looked = ", ".join(str(path) for path in lpips_heads_places()) or "no torchmetrics installed"
            raise FileNotFoundError(
                f"the LPIPS v0.1 AlexNet heads (alex.pth) are not installed (looked in {looked}); "
                "reinstall torchmetrics"
            )
        alexnet = find_weights_file(
            ALEXNET, choice if isinstance(choice, Path) else None, download=choice is True
        )
    except (OSError, ValueError, RuntimeError) as error:
        if choice == "auto" and heads is None:
            return _skipped(str(error))
        raise ConfigError(f"lpips={shown}: {error}") from error
    if alexnet is None:  # "auto" and nothing found
        return _skipped(
            f"the AlexNet ImageNet weights are not at {ALEXNET.cache_path()} (nor named by "
            f"${ALEXNET.env_var})"
        )
    description = f"AlexNet v0.1 (lower is better; {alexnet} sha256 {ALEXNET.sha256[:8]}..., heads {heads})"
    return lpips_from_files(alexnet, heads), description


def _skipped(reason: str) -> tuple[None, str]:
    warnings.warn(
        f"LPIPS skipped: {reason}. Put torchvision's {ALEXNET.file_name} there (or set "
        f"{ALEXNET.env_var}=/path/to/it, or lpips=/path/to/it); lpips=true downloads it once.",
        stacklevel=3,
    )
    return None, f"skipped (lpips=auto): {reason}"
