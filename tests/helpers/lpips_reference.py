"""The reference LPIPS (the ``lpips`` package, v0.1 AlexNet) on seeded AlexNet weights, for the LPIPS tests.

The ImageNet AlexNet cannot be downloaded where the suite is developed, so both sides get the same
random-but-seeded AlexNet (:func:`seeded_alexnet_state_dict`, saved to a file) and the real v0.1
linear heads. The reference is ``lpips.LPIPS(net="alex", version="0.1")`` of the ``lpips`` package
(0.1.4, installed with ``pip install --no-deps lpips``: its torchvision requirement would pull a CUDA
torch, and PyPI's torchvision wheel does not import beside a CPU torch). Its only torchvision use is
``torchvision.models.alexnet(pretrained=...).features``; where torchvision does not import,
:func:`reference_lpips` gives it :func:`torchvision_stub`, that one function with torchvision's layer
list written out (read off torchvision 0.28.0 ``torchvision/models/alexnet.py``). The trunk's weights
are then copied from the seeded state dict into the package's ``slice<k>.<idx>`` modules.

:data:`REFERENCE_VALUES` holds what the reference printed on the photographs of :func:`photo_pairs`,
so the comparison runs where the package is absent too. Made with (in this repository's root)::

    PYTHONPATH=src:tests python -m helpers.lpips_reference
"""

from __future__ import annotations

import hashlib
import importlib
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import skimage.data
import torch
from PIL import Image
from torch import nn

PHOTOS = ("astronaut", "chelsea", "coffee")
CROP = (200, 300)
SEED = 0
# sha256 of the seeded state dict's tensors (key order, float32 bytes): the values below were made on it
SEEDED_WEIGHTS_SHA256 = "8e5c1118e17d6ead49eb35b20da5f918fca128c5ad059c230d5b999c406c068f"
# LPIPS(HR, PIL-bicubic /4 then x4 of HR) and LPIPS(HR, HR with a shifted copy) by the lpips package
# (lpips 0.1.4 through the torchvision stub, torch 2.13.0+cpu)
REFERENCE_VALUES = {
    "astronaut": (0.011893115937709808, 0.021692130714654922),
    "chelsea": (0.013071351684629917, 0.02526065893471241),
    "coffee": (0.008209562860429287, 0.01607544720172882),
}

# torchvision alexnet().features: (in, out, kernel, stride, padding) of conv 0, 3, 6, 8, 10
_TORCHVISION_CONVS = {
    0: (3, 64, 11, 4, 2),
    3: (64, 192, 5, 1, 2),
    6: (192, 384, 3, 1, 1),
    8: (384, 256, 3, 1, 1),
    10: (256, 256, 3, 1, 1),
}


def seeded_alexnet_state_dict(seed: int = SEED) -> dict[str, torch.Tensor]:
    """torchvision-layout AlexNet features (He-normal weights, small biases) and one classifier entry."""
    generator = torch.Generator().manual_seed(seed)
    state_dict = {}
    for index, (in_channels, out_channels, kernel, _, _) in _TORCHVISION_CONVS.items():
        fan_in = in_channels * kernel * kernel
        weight = torch.randn(out_channels, in_channels, kernel, kernel, generator=generator)
        state_dict[f"features.{index}.weight"] = weight * (2.0 / fan_in) ** 0.5
        state_dict[f"features.{index}.bias"] = torch.randn(out_channels, generator=generator) * 0.05
    state_dict["classifier.6.bias"] = torch.randn(1000, generator=generator)
    return state_dict


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key, value in state_dict.items():
        digest.update(key.encode())
        digest.update(value.contiguous().numpy().tobytes())
    return digest.hexdigest()


def photo_pairs() -> Iterator[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(name, HR, bicubic, shifted): (1, 3, 200, 300) float32 in [-1, 1], the centre of each photograph
    (8-bit); bicubic = PIL bicubic /4 then x4; shifted = HR moved 3 px right (edge column repeated)."""
    height, width = CROP
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        top, left = ((size - crop) // 2 for size, crop in zip(photo.shape[:2], CROP, strict=True))
        hr = Image.fromarray(photo[top : top + height, left : left + width])
        small = hr.resize((width // 4, height // 4), Image.Resampling.BICUBIC)
        bicubic = np.asarray(small.resize((width, height), Image.Resampling.BICUBIC))
        pixels = np.asarray(hr)
        shifted = np.concatenate([np.repeat(pixels[:, :1], 3, axis=1), pixels[:, :-3]], axis=1)
        yield name, *(_as_tensor(image) for image in (pixels, bicubic, shifted))


def _as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def torchvision_stub() -> types.ModuleType:
    """A module ``torchvision`` whose ``models.alexnet(pretrained=False).features`` is torchvision's
    AlexNet feature stack (random init); all the lpips package asks of torchvision."""

    def alexnet(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        if pretrained:
            raise RuntimeError("the stub has no ImageNet weights; use pnet_rand=True")
        layers: list[nn.Module] = []
        for index in range(13):
            if index in _TORCHVISION_CONVS:
                in_channels, out_channels, kernel, stride, padding = _TORCHVISION_CONVS[index]
                layers.append(nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding))
            elif index in (2, 5, 12):
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
            else:
                layers.append(nn.ReLU(inplace=True))
        model = nn.Module()
        model.features = nn.Sequential(*layers)
        return model

    torchvision = types.ModuleType("torchvision")
    models = types.ModuleType("torchvision.models")
    models.alexnet = alexnet  # type: ignore[attr-defined]
    torchvision.models = models  # type: ignore[attr-defined]
    return torchvision


@contextmanager
def _torchvision_for_lpips() -> Iterator[str]:
    """Real torchvision when it imports, else the stub (in sys.modules while lpips is imported)."""
    try:
        importlib.import_module("torchvision.models")
        yield "torchvision"
        return
    except Exception:  # absent, or a CUDA build that does not load beside a CPU torch
        for name in [
            name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")
        ]:
            del sys.modules[name]
    stub = torchvision_stub()
    saved = {name: sys.modules.get(name) for name in ("torchvision", "torchvision.models")}
    sys.modules["torchvision"], sys.modules["torchvision.models"] = stub, stub.models  # type: ignore[attr-defined]
    try:
        yield "a torchvision stub (torchvision does not import here)"
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def reference_lpips(alexnet: dict[str, torch.Tensor]) -> tuple[Callable[..., torch.Tensor], Path, str]:
    """The lpips package's LPIPS v0.1 AlexNet with this trunk and its own heads: (distance(x, y) -> (B,),
    the heads file it loaded, how torchvision was provided). ImportError when lpips is not installed."""
    with _torchvision_for_lpips() as provider:
        import lpips

        reference = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    for name, parameter in reference.net.named_parameters():  # slice<k>.<idx>.weight / .bias
        _, index, kind = name.split(".")
        parameter.data.copy_(alexnet[f"features.{index}.{kind}"])
    heads = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"

    def distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return reference(x, y).view(-1)

    return distance, heads, provider


def main() -> None:
    """Prints the digest of the seeded weights and the reference's values (for this module's constants)."""
    state_dict = seeded_alexnet_state_dict()
    distance, heads, provider = reference_lpips(state_dict)
    lpips_version = importlib.metadata.version("lpips")
    print(f"# lpips {lpips_version}, heads {heads}, torchvision: {provider}, torch {torch.__version__}")
    print(f'SEEDED_WEIGHTS_SHA256 = "{weights_digest(state_dict)}"')
    print("REFERENCE_VALUES = {")
    for name, hr, bicubic, shifted in photo_pairs():
        print(f'    "{name}": ({float(distance(hr, bicubic))!r}, {float(distance(hr, shifted))!r}),')
    print("}")


if __name__ == "__main__":
    main()
