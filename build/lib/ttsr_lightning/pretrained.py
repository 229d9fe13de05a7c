"""ImageNet weights of torchvision (VGG19, AlexNet) and the LPIPS linear heads: found, checked, loaded.

A torchvision weights file (:class:`TorchvisionFile`) is found, in this order, at a path the caller
names, at the path in its environment variable (``$TTSR_VGG19_WEIGHTS``, ``$TTSR_ALEXNET_WEIGHTS``), in
the torch.hub cache (``<torch.hub.get_dir()>/checkpoints/<file name>``), or downloaded once into that
cache when the caller asks for it (:func:`find_weights_file`). Every file is checked against
torchvision's sha256 before it is read; a missing or corrupt file is an error naming the path and the
expected hash, and an unreachable download says where to put the file by hand.

``vgg_weights`` specs, as accepted by the LTE, ``VGG19Features`` and the perceptual loss:

- ``"imagenet"``: the environment variable's file, else the cache, else downloaded into the cache;
- ``"auto"``: the same two local places, but never downloads: with neither present it falls back to
  random initialisation with one warning, so offline runs and fresh clones work;
- ``"random"``: no weights (the layers keep PyTorch's default init); for tests and ablations;
- any other string or ``os.PathLike``: that file.

The AlexNet file drives LPIPS (:mod:`ttsr_lightning.models.lpips`, its ``lpips`` setting); the LPIPS
linear heads come from the ``alex.pth`` that torchmetrics (or the ``lpips`` package) installs
(:func:`lpips_heads_file`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.hub import download_url_to_file

VggWeights = Literal["imagenet", "auto", "random"] | str | os.PathLike[str]

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_SHA256 = "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44"
VGG19_ENV_VAR = "TTSR_VGG19_WEIGHTS"

# torchvision's AlexNet (AlexNet_Weights.IMAGENET1K_V1, 244 MB): its file name carries the first 8 hex
# digits of the sha256 (what torch.hub checks on download); the full digest is the file's as mirrored.
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
ALEXNET_SHA256 = "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02"
ALEXNET_ENV_VAR = "TTSR_ALEXNET_WEIGHTS"

# LPIPS v0.1 linear heads on AlexNet (Zhang et al. 2018), 6 kB: the same file in torchmetrics
# (functional/image/lpips_models/alex.pth) and in the lpips package (weights/v0.1/alex.pth).
LPIPS_HEADS_SHA256 = "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"
LPIPS_HEADS_PLACES = (
    ("torchmetrics", ("functional", "image", "lpips_models", "alex.pth")),
    ("lpips", ("weights", "v0.1", "alex.pth")),
)

_HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class TorchvisionFile:
    """One of torchvision's weights files: its name in messages, URL, sha256, environment variable,
    and what to do instead when it cannot be downloaded (``offline_hint``)."""

    label: str
    url: str
    sha256: str
    env_var: str
    offline_hint: str

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[1]

    def cache_path(self) -> Path:
        """Where torch.hub keeps (or would keep) the file: ``<hub dir>/checkpoints/<file name>``."""
        return Path(torch.hub.get_dir()) / "checkpoints" / self.file_name


VGG19 = TorchvisionFile(
    "VGG19",
    VGG19_URL,
    VGG19_SHA256,
    VGG19_ENV_VAR,
    'or use vgg_weights="auto" (random init when the file is absent)',
)
ALEXNET = TorchvisionFile(
    "AlexNet",
    ALEXNET_URL,
    ALEXNET_SHA256,
    ALEXNET_ENV_VAR,
    "or use lpips=auto (LPIPS skipped when the file is absent)",
)


def vgg19_cache_path() -> Path:
    """Where torch.hub keeps (or would keep) torchvision's VGG19 file: ``<hub dir>/checkpoints/<name>``."""
    return VGG19.cache_path()


def sha256_of_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (the VGG19 file is 548 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(
    path: str | os.PathLike[str], expected_sha256: str, weights: TorchvisionFile = VGG19
) -> None:
    """Raises FileNotFoundError / ValueError naming ``path`` and ``expected_sha256`` unless they match."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"{weights.label} weights file {path} does not exist (expected torchvision's {weights.url}, "
            f"sha256 {expected_sha256})"
        )
    actual = sha256_of_file(path)
    if actual != expected_sha256:
        raise ValueError(
            f"{weights.label} weights file {path} is corrupt or not torchvision's {weights.label}: sha256 "
            f"{actual}, expected {expected_sha256}. Delete it and download {weights.url} again."
        )


def download_weights(weights: TorchvisionFile, destination: Path, expected_sha256: str) -> None:
    """Downloads a torchvision file to ``destination`` and checks its sha256 (removing a bad file)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        download_url_to_file(weights.url, str(destination), progress=True)
    except OSError as error:  # URLError and socket errors are OSErrors
        raise RuntimeError(
            f"could not download the {weights.label} ImageNet weights from {weights.url} ({error}). Fetch "
            f"that file elsewhere and put it at {destination}, or set {weights.env_var}=/path/to/"
            f"{weights.file_name}, {weights.offline_hint}"
        ) from error
    try:
        verify_sha256(destination, expected_sha256, weights)
    except ValueError:
        destination.unlink()
        raise


def find_weights_file(
    weights: TorchvisionFile,
    path: str | os.PathLike[str] | None = None,
    download: bool = False,
    expected_sha256: str | None = None,
) -> Path | None:
    """The checked file: ``path`` if given, else ``$<env_var>``'s, else the torch.hub cache's, else (with
    ``download``) downloaded into the cache; None when none of these has it.

    ``expected_sha256``: None is the file's own (:attr:`TorchvisionFile.sha256`); tests give a fake's.
    """
    expected_sha256 = expected_sha256 or weights.sha256
    if path is not None:
        found = Path(path)
    elif env_path := os.environ.get(weights.env_var):
        found = Path(env_path)
    else:
        found = weights.cache_path()
        if not found.is_file():
            if not download:
                return None
            download_weights(weights, found, expected_sha256)  # checks the hash
            return found
    verify_sha256(found, expected_sha256, weights)
    return found


def load_weights_file(path: Path, weights: TorchvisionFile) -> dict[str, torch.Tensor]:
    """The state dict a checked torchvision file holds (keys ``features.<idx>.*``, ``classifier.*``)."""
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state_dict, dict):
        raise ValueError(
            f"{weights.label} weights file {path} holds a {type(state_dict).__name__}, expected a state dict"
        )
    return state_dict


def resolve_vgg19_file(vgg_weights: VggWeights, expected_sha256: str | None = None) -> Path | None:
    """The checked VGG19 file a ``vgg_weights`` spec names, or None for random initialisation.

    ``expected_sha256``: None is torchvision's :data:`VGG19_SHA256`; tests give a small fake file's hash.
    """
    if vgg_weights == "random":
        return None
    named = None if vgg_weights in ("imagenet", "auto") else vgg_weights
    path = find_weights_file(
        VGG19, named, download=vgg_weights == "imagenet", expected_sha256=expected_sha256 or VGG19_SHA256
    )
    if path is None:
        warnings.warn(
            f"VGG19 ImageNet weights not found at {VGG19.cache_path()} (nor named by ${VGG19_ENV_VAR}); "
            'vgg_weights="auto" falls back to RANDOM initialisation. Use vgg_weights="imagenet" '
            "to download them once.",
            stacklevel=2,
        )
    return path


def load_vgg19_state_dict(
    vgg_weights: VggWeights, expected_sha256: str | None = None
) -> dict[str, torch.Tensor] | None:
    """torchvision's VGG19 state dict (keys ``features.<idx>.*``, ``classifier.*``) for a spec, or None.

    See the module docstring for the specs; raises when a named file is missing or fails the hash.
    """
    path = resolve_vgg19_file(vgg_weights, expected_sha256)
    return None if path is None else load_weights_file(path, VGG19)


def torchvision_entries(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str
) -> dict[str, torch.Tensor]:
    """The entries of ``module``'s own state dict taken from a torchvision state dict (extra entries,
    e.g. the ``classifier.*`` head, ignored); ValueError listing every missing or mis-shaped key."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    mis_shaped = [
        f"{key}: file {tuple(state_dict[key].shape)}, expected {tuple(own[key].shape)}"
        for key in own
        if key in state_dict and state_dict[key].shape != own[key].shape
    ]
    if missing or mis_shaped:
        raise ValueError(f"not {what}: missing keys {missing}, mis-shaped keys {mis_shaped}")
    return {key: state_dict[key] for key in own}


def lpips_heads_places() -> list[Path]:
    """Where the LPIPS v0.1 AlexNet heads are looked for: in the installed torchmetrics, then lpips."""
    places = []
    for package, parts in LPIPS_HEADS_PLACES:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            places.append(Path(next(iter(spec.submodule_search_locations)), *parts))
    return places


def lpips_heads_file() -> Path | None:
    """The first of :func:`lpips_heads_places` that holds the heads with :data:`LPIPS_HEADS_SHA256`."""
    for path in lpips_heads_places():
        if path.is_file() and sha256_of_file(path) == LPIPS_HEADS_SHA256:
            return path
    return None
