"""Evaluation protocols: how a codebase turns an SR image into the PSNR/SSIM it publishes.

The same TTSR-rec weights give 26.99 dB (the official evaluation), 27.09 (the paper's stitched
references) or 25.24 (mmagic's RGB with a 4-pixel crop): the numbers differ by protocol, not by model.
A :class:`Protocol` names everything that decides the number, each read in its codebase's own code:

- ``colour``: ``y_ttsr`` (Y = 16 + (65.738 R + 129.057 G + 25.064 B) / 256, the official TTSR
  ``utils.py``), ``y_basicsr`` (Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 through BasicSR's
  float32 ``bgr2ycbcr``, fed BGR as its pipeline does) or ``rgb`` (three channels, mmagic);
- ``crop_border``: pixels shaved off each side before measuring (0 or 4);
- ``rounding``: how the network's output becomes pixels (:func:`ttsr_lightning.metrics.image_values`);
- ``cufed5_reference`` / ``sun80_reference``: the reference policy the convention evaluates with
  (the evaluation set that gives its published number: ``L1``, ``stitched``, ``stitched_masa``,
  ``all5``; ``random``, ``all``);
- ``source`` (repository, commit, file and function) and ``known`` (numbers it produced there).

Each protocol is a file ``conf/protocol/<name>.yaml`` holding ``<name>: {_target_, fields}``, a Hydra
config group whose options can be selected several at a time: ``protocol=basicsr``,
``protocol=[ttsr_official,mmagic]``, ``protocol=all`` (``all.yaml`` lists every file). The composed
``protocol`` node maps names to fields; :func:`protocols_from_config` builds them, in order. Every
result row carries its protocol's name; ``evaluate protocol=all`` scores each generator pass under
every protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, get_args

import torch
from omegaconf import OmegaConf

from ttsr_lightning.config_paths import CONFIG_DIR
from ttsr_lightning.errors import ConfigError
from ttsr_lightning.metrics import Colour, Rounding, image_values, psnr, ssim

PROTOCOL_DIR = CONFIG_DIR / "protocol"
# the protocol of validation and of a run's own test numbers (the official evaluation)
DEFAULT_PROTOCOL = "ttsr_official"


@dataclass(frozen=True)
class Protocol:
    """One evaluation convention (see the module docstring for each field)."""

    name: str
    colour: Colour
    crop_border: int
    rounding: Rounding
    cufed5_reference: str
    sun80_reference: str
    source: str
    known: tuple[str, ...] = field(default_factory=tuple)
    description: str = ""

    def __post_init__(self) -> None:
        if self.colour not in get_args(Colour):
            raise ConfigError(
                f"protocol {self.name}: colour must be one of {get_args(Colour)}, got {self.colour!r}"
            )
        if self.rounding not in get_args(Rounding):
            raise ConfigError(
                f"protocol {self.name}: rounding must be one of {get_args(Rounding)}, got {self.rounding!r}"
            )
        if self.crop_border < 0:
            raise ConfigError(f"protocol {self.name}: crop_border must be >= 0, got {self.crop_border}")

    def pixels(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> the pixel values this convention measures, float64 on [0, 255]."""
        return image_values(image, self.rounding)

    def psnr(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """Per-image PSNR (B,) of two images in [-1, 1] (B, 3, H, W)."""
        return psnr(self.pixels(sr), self.pixels(hr), self.colour, self.crop_border)

    def ssim(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """Per-image SSIM (B,) of two images in [-1, 1] (B, 3, H, W)."""
        return ssim(self.pixels(sr), self.pixels(hr), self.colour, self.crop_border)

    def measure_pixels(self, sr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(PSNR, SSIM) per image of pixel values already on [0, 255] (e.g. decoded 8-bit files)."""
        return psnr(sr, hr, self.colour, self.crop_border), ssim(sr, hr, self.colour, self.crop_border)

    def summary(self) -> str:
        """One line: what is measured, on which reference, after which source."""
        colour = {"y_ttsr": "Y (TTSR BT.601)", "y_basicsr": "Y (BasicSR BT.601)", "rgb": "RGB"}[self.colour]
        crop = f"crop {self.crop_border}" if self.crop_border else "no crop"
        return f"{self.name}: {colour}, {crop}, CUFED5 {self.cufed5_reference}, Sun80 {self.sun80_reference}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "known": list(self.known)}


def available_protocols() -> list[str]:
    """Names of the protocols in the order of ``conf/protocol/all.yaml`` (the default first)."""
    listed = OmegaConf.to_container(OmegaConf.load(PROTOCOL_DIR / "all.yaml"))
    assert isinstance(listed, dict)
    return [str(name) for name in listed.get("defaults", [])]


def protocols_from_config(node: Mapping[str, Any] | None) -> list[Protocol]:
    """The protocols of a composed ``protocol`` config node ({name: fields}), in selection order."""
    if not node:
        raise ConfigError(f"protocol: no protocol chosen; expected some of {available_protocols()} or all")
    protocols = []
    for name, fields in node.items():
        values = dict(fields)
        values.pop("_target_", None)
        values["known"] = tuple(values.get("known") or ())
        try:
            protocols.append(Protocol(name=str(name), **values))
        except TypeError as exc:
            raise ConfigError(f"protocol.{name}: does not fit Protocol ({exc})") from exc
    return protocols


def load_protocols(*names: str) -> list[Protocol]:
    """Protocols by name from conf/protocol/ (outside Hydra, e.g. in tests); ``"all"`` = every file."""
    if names == ("all",):
        names = tuple(available_protocols())
    node: dict[str, Any] = {}
    for name in names:
        path = PROTOCOL_DIR / f"{name}.yaml"
        if name == "all" or not path.is_file():
            raise ConfigError(
                f"protocol: unknown protocol {name!r}; expected one of {available_protocols()} or all"
            )
        loaded = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        assert isinstance(loaded, dict)
        node[name] = loaded[name]
    return protocols_from_config(node)
