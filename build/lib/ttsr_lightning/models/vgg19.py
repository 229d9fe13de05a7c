"""VGG19 convolutional features in torchvision's layout, and the ImageNet input normalisation.

torchvision is not a dependency (it pulls a CUDA build of torch), so the stack is rebuilt here with
the same module indices as ``torchvision.models.vgg19().features``: a torchvision ImageNet state dict
(``features.<idx>.weight`` / ``.bias``) loads into it by key. Users of the stack: the LTE
(``features[:12]``, up to relu3_1) and the perceptual loss (``features[:30]``, up to relu5_1).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ttsr_lightning.pretrained import VggWeights, load_vgg19_state_dict, torchvision_entries

# torchvision's configuration "E" (VGG19): output channels of each 3x3 conv, "M" = 2x2 max-pool.
VGG19_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)  # fmt: skip

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _vgg19_layers() -> list[nn.Module]:
    """All 37 layers of torchvision's ``vgg19().features``, in order (each conv is followed by a ReLU)."""
    layers: list[nn.Module] = []
    in_channels = 3
    for entry in VGG19_LAYOUT:
        if entry == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            out_channels = int(entry)
            # In-place ReLUs as torchvision: every slice boundary used by the callers sits after a ReLU
            # and is followed by a conv, so no returned feature map is overwritten.
            layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = out_channels
    return layers


NUM_VGG19_LAYERS = len(_vgg19_layers())


class ImageNetNormalize(nn.Module):
    """Maps project images to the input statistics VGG19 was trained with.

    ``forward(x)``: x (B, 3, H, W) in [-1, 1] -> ``((x + 1) / 2 - mean) / std`` (B, 3, H, W), i.e. the
    [0, 1] image normalised with the ImageNet mean/std (the official code's ``MeanShift`` 1x1 conv).
    Mean and std are non-persistent buffers: they follow ``.to(device)`` but stay out of state dicts
    (the official checkpoints' ``LTE.sub_mean.*`` is checked and dropped on import instead).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1.0) / 2.0 - self.mean) / self.std


class VGG19Features(nn.Module):
    """The first ``num_layers`` layers of torchvision's ``vgg19().features`` (keys ``features.<idx>.*``).

    Args:
        num_layers: how many layers to keep, 1..37 (12 ends at relu3_1, 30 at relu5_1).
        vgg_weights: ``"imagenet"``, ``"auto"``, ``"random"`` or a file path; see
            :func:`ttsr_lightning.pretrained.load_vgg19_state_dict`.

    ``forward(x)``: x (B, 3, H, W), already ImageNet-normalised -> the output of layer ``num_layers - 1``.
    """

    def __init__(self, num_layers: int, vgg_weights: VggWeights = "random") -> None:
        super().__init__()
        if not 1 <= num_layers <= NUM_VGG19_LAYERS:
            raise ValueError(
                f"num_layers must be in 1..{NUM_VGG19_LAYERS} (VGG19 features), got {num_layers}"
            )
        self.features = nn.Sequential(*_vgg19_layers()[:num_layers])
        state_dict = load_vgg19_state_dict(vgg_weights)
        if state_dict is None:
            self._init_like_torchvision()
        else:
            self.load_torchvision_state_dict(state_dict)

    def _init_like_torchvision(self) -> None:
        """Random init as torchvision's VGG (He normal, fan-out; zero bias).

        PyTorch's default conv init shrinks activations layer by layer: at relu5_1 they are ~1e-6,
        perceptual-loss gradients vanish, and CPU arithmetic on the resulting subnormal floats is
        slow. He init keeps the feature scale, so a random VGG behaves like a VGG, if a meaningless one.
        """
        for layer in self.features:
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    def load_torchvision_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Copies the ``features.<idx>.*`` entries this stack has from a torchvision VGG19 state dict.

        Entries beyond ``num_layers`` and the ``classifier.*`` head are ignored; a missing or
        mis-shaped entry within the stack raises ``ValueError`` listing them all.
        """
        self.load_state_dict(
            torchvision_entries(self, state_dict, "a torchvision VGG19 state dict for this stack")
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
