"""VGG19 ImageNet weights (torchvision's file): a local file, the torch.hub cache, or a checked download.

``vgg_weights`` specs, as accepted by the LTE, ``VGG19Features`` and the perceptual loss:

- ``"imagenet"``: the file named by ``$TTSR_VGG19_WEIGHTS`` if set, else the torch.hub cache
  (``<torch.hub.get_dir()>/checkpoints/vgg19-dcbb9e9d.pth``), else downloaded once into that cache.
  An unreachable download is an error that says where to put the file by hand.
- ``"auto"``: the same two local places, but never downloads: with neither present it falls back to
  random initialisation with one warning, so offline runs and fresh clones work.
- ``"random"``: no weights (the layers keep PyTorch's default init); for tests and ablations.
- any other string or ``os.PathLike``: that file.

Every file is checked against torchvision's sha256 before it is read; a missing or corrupt file is
an error naming the path and the expected hash.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Literal

import torch
from torch.hub import download_url_to_file

VggWeights = Literal["imagenet", "auto", "random"] | str | os.PathLike[str]

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_SHA256 = "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44"
VGG19_ENV_VAR = "TTSR_VGG19_WEIGHTS"

_HASH_CHUNK_BYTES = 1 << 20


def vgg19_cache_path() -> Path:
    """Where torch.hub keeps (or would keep) torchvision's VGG19 file: ``<hub dir>/checkpoints/<name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_URL.rsplit("/", 1)[1]


def sha256_of_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (the VGG19 file is 548 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike[str], expected_sha256: str) -> None:
    """Raises FileNotFoundError / ValueError naming ``path`` and ``expected_sha256`` unless they match."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"VGG19 weights file {path} does not exist (expected torchvision's {VGG19_URL}, "
            f"sha256 {expected_sha256})"
        )
    actual = sha256_of_file(path)
    if actual != expected_sha256:
        raise ValueError(
            f"VGG19 weights file {path} is corrupt or not torchvision's VGG19: sha256 {actual}, "
            f"expected {expected_sha256}. Delete it and download {VGG19_URL} again."
        )


def download_vgg19(destination: Path, expected_sha256: str) -> None:
    """Downloads torchvision's VGG19 file to ``destination`` and checks its sha256 (removing a bad file)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        download_url_to_file(VGG19_URL, str(destination), progress=True)
    except OSError as error:  # URLError and socket errors are OSErrors
        raise RuntimeError(
            f"could not download the VGG19 ImageNet weights from {VGG19_URL} ({error}). Fetch that file "
            f"elsewhere and put it at {destination}, or set {VGG19_ENV_VAR}=/path/to/vgg19-dcbb9e9d.pth, "
            'or use vgg_weights="auto" (random init when the file is absent)'
        ) from error
    try:
        verify_sha256(destination, expected_sha256)
    except ValueError:
        destination.unlink()
        raise


def resolve_vgg19_file(vgg_weights: VggWeights, expected_sha256: str | None = None) -> Path | None:
    """The checked VGG19 file a ``vgg_weights`` spec names, or None for random initialisation.

    ``expected_sha256``: None is torchvision's :data:`VGG19_SHA256`; tests give a small fake file's hash.
    """
    if vgg_weights == "random":
        return None
    expected_sha256 = expected_sha256 or VGG19_SHA256
    if vgg_weights not in ("imagenet", "auto"):
        path = Path(vgg_weights)
    elif env_path := os.environ.get(VGG19_ENV_VAR):
        path = Path(env_path)
    else:
        path = vgg19_cache_path()
        if not path.is_file():
            if vgg_weights == "auto":
                warnings.warn(
                    f"VGG19 ImageNet weights not found at {path} (nor named by ${VGG19_ENV_VAR}); "
                    'vgg_weights="auto" falls back to RANDOM initialisation. Use vgg_weights="imagenet" '
                    "to download them once.",
                    stacklevel=2,
                )
                return None
            download_vgg19(path, expected_sha256)  # checks the hash
            return path
    verify_sha256(path, expected_sha256)
    return path


def load_vgg19_state_dict(
    vgg_weights: VggWeights, expected_sha256: str | None = None
) -> dict[str, torch.Tensor] | None:
    """torchvision's VGG19 state dict (keys ``features.<idx>.*``, ``classifier.*``) for a spec, or None.

    See the module docstring for the specs; raises when a named file is missing or fails the hash.
    """
    path = resolve_vgg19_file(vgg_weights, expected_sha256)
    if path is None:
        return None
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state_dict, dict):
        raise ValueError(
            f"VGG19 weights file {path} holds a {type(state_dict).__name__}, expected a state dict"
        )
    return state_dict
