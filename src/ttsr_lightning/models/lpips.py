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

:func:`ttsr_lightning.lpips_setting.load_lpips` builds the network from a setting (``lpips: auto |
true | false | <path>``) with the weights :mod:`ttsr_lightning.pretrained` finds, and says what it
used or why LPIPS is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ttsr_lightning.models.vgg19 import ImageNetNormalize
from ttsr_lightning.pretrained import (
    torchvision_entries,
)

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

    Built with PyTorch's default initialisation: load the ImageNet AlexNet and the v0.1 heads
    (:meth:`load_alexnet` and :meth:`load_heads`, or :func:`ttsr_lightning.lpips_setting.lpips_from_files`)
    before measuring anything.

    ``forward(x, y)``: x, y (B, 3, H, W) in [-1, 1], H and W >= 31 -> (B,) float32 distances.
    """

    def __init__(self) -> None:
        super().__init__()
        self.normalize = ImageNetNormalize()
        self.alexnet = AlexNetFeatures()
        self.heads = nn.ModuleList(nn.Conv2d(channels, 1, 1, bias=False) for channels in ALEXNET_CHANNELS)
        self.requires_grad_(False)
        self.eval()

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
