"""LPIPS, the learned perceptual image patch similarity (Zhang et al., CVPR 2018), AlexNet v0.1.

The distance the ``lpips`` package computes with ``LPIPS(net="alex", version="0.1")`` and torchmetrics
with ``LearnedPerceptualImagePatchSimilarity(net_type="alex")``, rebuilt in plain torch (torchvision is
not a dependency):

1. both images, (B, 3, H, W) in [-1, 1], are normalised per channel: the package's ``ScalingLayer``
   ``(x - shift) / scale`` with shift = 2 * mean - 1 and scale = 2 * std of ImageNet, i.e. the ImageNet
   normalisation of the [0, 1] image (:class:`~ttsr_lightning.models.vgg19.ImageNetNormalize`);
2. AlexNet's convolutional features (torchvision's ``alexnet().features``, ImageNet weights) are taken
   after each of its five ReLUs;
3. each feature vector is divided by its L2 norm over the channels (``+ 1e-10``), and the squared
   difference of the two images' normalised features is weighted per channel by a learned 1x1
   convolution (the "linear heads", no bias) and averaged over the positions;
4. the distance is the sum over the five layers: 0 for identical images, **lower is more similar**.

Whole images of any size from 31x31 px up; the features stay at most 1/4 of the image's resolution
(64 channels at 1/4, fewer at lower ones), so memory grows like about 20 floats per pixel per image.

:func:`load_lpips` builds the network from a setting (``lpips: auto | true | false | <path>``) with the
weights :mod:`ttsr_lightning.pretrained` finds, and says what it used or why LPIPS is skipped.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ttsr_lightning.errors import ConfigError
from ttsr_lightning.models.vgg19 import ImageNetNormalize
from ttsr_lightning.pretrained import (
    ALEXNET,
    find_weights_file,
    load_weights_file,
    lpips_heads_file,
    lpips_heads_places,
    torchvision_entries,
)

LpipsSetting = bool | Literal["auto"] | str | os.PathLike[str]

# torchvision's alexnet().features up to relu5 (its last max-pool, index 12, is not used by LPIPS):
# (out channels, kernel, stride, padding) of each conv, "M" = 3x3 max-pool with stride 2.
ALEXNET_LAYOUT: tuple[tuple[int, int, int, int] | str, ...] = (
    (64, 11, 4, 2), "M", (192, 5, 1, 2), "M", (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1),
)  # fmt: skip
# the features LPIPS compares: the outputs of relu1..relu5, and their channels
ALEXNET_TAPS = (1, 4, 7, 9, 11)
ALEXNET_CHANNELS = (64, 192, 384, 256, 256)
NORMALISE_EPS = 1e-10
# the smallest side whose relu5 map is not empty (two 3x3/2 max-pools after the 11x11/4 conv)
MIN_IMAGE_SIZE = 31


class AlexNetFeatures(nn.Module):
    """AlexNet's conv1..relu5 laid out like torchvision's ``alexnet().features[:12]`` (keys
    ``features.<idx>.*``), so a torchvision ImageNet state dict loads by key.

    ``forward(x)``: x (B, 3, H, W) scaled as LPIPS scales -> the five ReLU outputs, (B, 64, ~H/4, ~W/4)
    down to (B, 256, ~H/16, ~W/16).
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for entry in ALEXNET_LAYOUT:
            if isinstance(entry, str):  # "M"
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
            else:
                out_channels, kernel, stride, padding = entry
                conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding)
                # in place as torchvision: each tapped ReLU output is read, never written, afterwards
                layers += [conv, nn.ReLU(inplace=True)]
                in_channels = out_channels
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in ALEXNET_TAPS:
                taps.append(x)
        return taps


class LPIPS(nn.Module):
    """The LPIPS distance (module docstring); frozen, no gradients, no dropout.

    Built with PyTorch's default initialisation: load the ImageNet AlexNet and the v0.1 heads with
    :meth:`from_files` (or :meth:`load_alexnet` / :meth:`load_heads`) before measuring anything.

    ``forward(x, y)``: x, y (B, 3, H, W) in [-1, 1], H and W >= 31 -> (B,) float32 distances.
    """

    def __init__(self) -> None:
        super().__init__()
        self.normalize = ImageNetNormalize()
        self.alexnet = AlexNetFeatures()
        self.heads = nn.ModuleList(nn.Conv2d(channels, 1, 1, bias=False) for channels in ALEXNET_CHANNELS)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_files(cls, alexnet_file: str | os.PathLike[str], heads_file: str | os.PathLike[str]) -> LPIPS:
        """The network with torchvision's AlexNet state dict and the LPIPS heads (``alex.pth``) loaded
        from these (already checked) files."""
        network = cls()
        network.load_alexnet(load_weights_file(Path(alexnet_file), ALEXNET))
        heads = torch.load(heads_file, map_location="cpu", weights_only=True)
        if not isinstance(heads, Mapping):
            raise ValueError(
                f"LPIPS heads file {heads_file} holds a {type(heads).__name__}, expected a state dict"
            )
        network.load_heads(heads)
        return network

    def load_alexnet(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Copies ``features.{0,3,6,8,10}.*`` from a torchvision AlexNet state dict (``classifier.*``
        ignored); ValueError listing missing or mis-shaped keys."""
        self.alexnet.load_state_dict(
            torchvision_entries(self.alexnet, state_dict, "a torchvision AlexNet state dict")
        )

    def load_heads(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Copies the heads from an LPIPS state dict (keys ``lin<k>.model.1.weight``, as ``alex.pth``)."""
        renamed = {
            f"{k}.weight": state_dict[f"lin{k}.model.1.weight"]
            for k in range(len(self.heads))
            if f"lin{k}.model.1.weight" in state_dict
        }
        self.heads.load_state_dict(torchvision_entries(self.heads, renamed, "an LPIPS AlexNet heads file"))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.size(1) != 3 or x.shape != y.shape:
            raise ValueError(
                f"LPIPS needs two (B, 3, H, W) images of one shape, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if min(x.shape[-2:]) < MIN_IMAGE_SIZE:
            raise ValueError(
                f"LPIPS needs images of at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} px, got "
                f"{x.shape[-1]}x{x.shape[-2]}"
            )
        dtype = self.normalize.mean.dtype
        features_x = self.alexnet(self.normalize(x.to(dtype)))
        features_y = self.alexnet(self.normalize(y.to(dtype)))
        distance = x.new_zeros((x.shape[0], 1, 1, 1), dtype=dtype)
        for feature_x, feature_y, head in zip(features_x, features_y, self.heads, strict=True):
            squared = (_unit_length(feature_x) - _unit_length(feature_y)) ** 2
            distance = distance + head(squared).mean(dim=(2, 3), keepdim=True)
        return distance.view(-1)


def _unit_length(features: torch.Tensor) -> torch.Tensor:
    """Each position's feature vector divided by its L2 norm over the channels (+ eps, as LPIPS)."""
    return features / (torch.sqrt(torch.sum(features**2, dim=1, keepdim=True)) + NORMALISE_EPS)


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
    return LPIPS.from_files(alexnet, heads), description


def _skipped(reason: str) -> tuple[None, str]:
    warnings.warn(
        f"LPIPS skipped: {reason}. Put torchvision's {ALEXNET.file_name} there (or set "
        f"{ALEXNET.env_var}=/path/to/it, or lpips=/path/to/it); lpips=true downloads it once.",
        stacklevel=3,
    )
    return None, f"skipped (lpips=auto): {reason}"
