"""Official TTSR weights (researchmm/TTSR ``TTSR.pt`` / ``TTSR-rec.pt``) and generator-only checkpoints.

The official trainer saves a flat state dict with keys ``MainNet.*`` and ``LTE.*`` (optionally with
DataParallel's ``module.`` prefix and the frozen ``LTE_copy.*``) and no configuration. The project's
:class:`~ttsr_lightning.models.TTSRGenerator` has the same modules under ``main_net.*`` / ``lte.*``;
the fixed ImageNet normalisation ``LTE.sub_mean.*`` is a buffer-only module here, so it is checked
against the ImageNet mean/std and dropped.

CLI: ``python -m ttsr_lightning.official convert TTSR.pt TTSR.ckpt`` writes a generator-only file
``{"format": "ttsr-lightning/generator", "version": 1, "generator_config": {...}, "state_dict": {...}}``
with the configuration inferred from the tensors.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ttsr_lightning.models import TTSRGenerator
from ttsr_lightning.models.vgg19 import IMAGENET_MEAN, IMAGENET_STD

OFFICIAL_PREFIXES = {"MainNet.": "main_net.", "LTE.": "lte."}
DATA_PARALLEL_PREFIX = "module."
FROZEN_COPY_PREFIX = "LTE_copy."
SUB_MEAN_KEYS = ("LTE.sub_mean.weight", "LTE.sub_mean.bias")

GENERATOR_FORMAT = "ttsr-lightning/generator"
GENERATOR_FORMAT_VERSION = 1

# Residual-block groups that exist in both the CSFI and the single-path main network, one per entry
# of num_res_blocks (SFE, stage x1, x2, x4).
_BLOCK_GROUPS = ("main_net.SFE.RBs", "main_net.RB11", "main_net.RB22", "main_net.RB33")


def _load(path: str | os.PathLike[str]) -> object:
    return torch.load(path, map_location="cpu", weights_only=True)


def _flat_state_dict(loaded: object, source: str) -> dict[str, torch.Tensor]:
    if not isinstance(loaded, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in loaded.items()
    ):
        raise ValueError(
            f"{source}: expected a flat state dict (name -> tensor), got {type(loaded).__name__}"
        )
    return dict(loaded)


def _generator_payload(loaded: object, source: str) -> dict[str, Any]:
    if not isinstance(loaded, dict) or loaded.get("format") != GENERATOR_FORMAT:
        raise ValueError(
            f"{source} is not a {GENERATOR_FORMAT} file (write one with save_generator_checkpoint)"
        )
    if loaded.get("version") != GENERATOR_FORMAT_VERSION:
        raise ValueError(
            f"{source}: {GENERATOR_FORMAT} version {loaded.get('version')} is not supported "
            f"(this code reads version {GENERATOR_FORMAT_VERSION})"
        )
    return loaded


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A flat ``name -> tensor`` dict from a ``torch.save`` file (loaded with weights_only, on CPU)."""
    return _flat_state_dict(_load(path), str(path))


def check_sub_mean(weight: torch.Tensor, bias: torch.Tensor, source: str = "checkpoint") -> None:
    """Raises unless the official ``MeanShift`` 1x1 conv is the ImageNet normalisation of [0, 1] images."""
    std = torch.tensor(IMAGENET_STD)
    expected_weight = (torch.eye(3) / std.view(3, 1)).view(3, 3, 1, 1)
    expected_bias = -torch.tensor(IMAGENET_MEAN) / std
    if (
        weight.shape != expected_weight.shape
        or bias.shape != expected_bias.shape
        or not torch.allclose(weight.float(), expected_weight, atol=1e-5)
        or not torch.allclose(bias.float(), expected_bias, atol=1e-5)
    ):
        raise ValueError(
            f"{source}: LTE.sub_mean is not the ImageNet normalisation (mean {IMAGENET_MEAN}, std "
            f"{IMAGENET_STD}) that this LTE applies; weight {weight.flatten().tolist()}, bias {bias.tolist()}"
        )


def official_to_project_state_dict(
    official_state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Renames an official state dict to the generator's keys.

    Strips ``module.``, drops ``LTE_copy.*``, checks and drops ``LTE.sub_mean.*``, and renames
    ``MainNet.`` -> ``main_net.``, ``LTE.`` -> ``lte.``. Any other key is kept as is, so that loading
    reports it as unknown.
    """
    state_dict = {key.removeprefix(DATA_PARALLEL_PREFIX): value for key, value in official_state_dict.items()}
    if all(key in state_dict for key in SUB_MEAN_KEYS):
        check_sub_mean(state_dict[SUB_MEAN_KEYS[0]], state_dict[SUB_MEAN_KEYS[1]], source)
    project_state_dict = {}
    for key, value in state_dict.items():
        if key.startswith(FROZEN_COPY_PREFIX) or key in SUB_MEAN_KEYS:
            continue
        for official_prefix, project_prefix in OFFICIAL_PREFIXES.items():
            if key.startswith(official_prefix):
                key = project_prefix + key.removeprefix(official_prefix)
                break
        project_state_dict[key] = value
    return project_state_dict


def infer_generator_config(
    state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> dict[str, Any]:
    """``n_feats`` and ``num_res_blocks`` of a generator state dict (project keys), read off the tensors."""
    head_key = "main_net.SFE.conv_head.weight"
    if head_key not in state_dict:
        raise ValueError(f"{source}: cannot infer n_feats without {head_key}; pass n_feats explicitly")
    num_res_blocks = []
    for group in _BLOCK_GROUPS:
        pattern = re.compile(re.escape(group) + r"\.(\d+)\.")
        indices = [int(match.group(1)) for key in state_dict if (match := pattern.match(key))]
        num_res_blocks.append(max(indices, default=-1) + 1)
    return {"n_feats": state_dict[head_key].shape[0], "num_res_blocks": num_res_blocks}


def load_checked_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``module.load_state_dict`` that reports every unknown, missing and mis-shaped key in one error."""
    expected = module.state_dict()
    unknown = sorted(set(state_dict) - set(expected))
    missing = sorted(set(expected) - set(state_dict))
    mis_shaped = [
        f"{key} {tuple(state_dict[key].shape)} (expected {tuple(expected[key].shape)})"
        for key in expected
        if key in state_dict and state_dict[key].shape != expected[key].shape
    ]
    if unknown or missing or mis_shaped:
        problems = {"unknown keys": unknown, "missing keys": missing, "mis-shaped keys": mis_shaped}
        details = "; ".join(
            f"{len(keys)} {kind}: {', '.join(keys)}" for kind, keys in problems.items() if keys
        )
        raise ValueError(f"{source} does not fit {type(module).__name__}: {details}")
    module.load_state_dict(state_dict)


def generator_from_official_state_dict(
    official_state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint", **generator_kwargs: Any
) -> TTSRGenerator:
    """The generator (eval mode) holding an official state dict's weights (see load_official_generator)."""
    state_dict = official_to_project_state_dict(official_state_dict, source)
    config = {**infer_generator_config(state_dict, source), **generator_kwargs}
    # Every LTE weight comes from the checkpoint: skip looking for the ImageNet file.
    config.setdefault("vgg_weights", "random")
    generator = TTSRGenerator(**config)
    load_checked_state_dict(generator, state_dict, source)
    return generator.eval()


def load_official_generator(path: str | os.PathLike[str], **generator_kwargs: Any) -> TTSRGenerator:
    """Loads an official ``TTSR.pt`` / ``TTSR-rec.pt`` into a :class:`TTSRGenerator`, in eval mode.

    ``n_feats`` and ``num_res_blocks`` are inferred from the tensors unless given; other
    ``generator_kwargs`` go to the constructor (e.g. ``search_transfer``). Unknown, missing or
    mis-shaped keys raise one ``ValueError`` listing them all.
    """
    return generator_from_official_state_dict(read_state_dict(path), str(path), **generator_kwargs)


def save_generator_checkpoint(generator: TTSRGenerator, path: str | os.PathLike[str]) -> None:
    """Writes the project's generator-only file: format, version, ``generator.config``, state dict (CPU)."""
    torch.save(
        {
            "format": GENERATOR_FORMAT,
            "version": GENERATOR_FORMAT_VERSION,
            "generator_config": generator.config,
            "state_dict": {key: value.detach().cpu() for key, value in generator.state_dict().items()},
        },
        path,
    )


def load_generator_checkpoint(path: str | os.PathLike[str], **generator_kwargs: Any) -> TTSRGenerator:
    """Rebuilds a generator (eval mode) from :func:`save_generator_checkpoint`'s file.

    ``generator_kwargs`` override the recorded configuration or add implementation choices
    (``search_transfer``, ``search_chunk_size``); the LTE is not re-initialised from VGG19 files.
    """
    payload = _generator_payload(_load(path), str(path))
    config = {**payload["generator_config"], **generator_kwargs}
    config.setdefault("vgg_weights", "random")
    generator = TTSRGenerator(**config)
    load_checked_state_dict(generator, payload["state_dict"], str(path))
    return generator.eval()


def load_generator_weights(generator: TTSRGenerator, path: str | os.PathLike[str]) -> None:
    """Loads weights into an existing generator from an official state dict or a generator checkpoint.

    The file's architecture must fit ``generator`` (e.g. a training run initialised from ``TTSR.pt``);
    unknown, missing or mis-shaped keys raise one ``ValueError`` listing them all.
    """
    loaded = _load(path)
    if isinstance(loaded, dict) and "format" in loaded:
        state_dict = _generator_payload(loaded, str(path))["state_dict"]
    else:
        state_dict = official_to_project_state_dict(_flat_state_dict(loaded, str(path)), str(path))
    load_checked_state_dict(generator, state_dict, str(path))


def _convert(input_path: str, output_path: str) -> None:
    official_state_dict = read_state_dict(input_path)
    generator = generator_from_official_state_dict(official_state_dict, input_path)
    save_generator_checkpoint(generator, output_path)
    keys = [key.removeprefix(DATA_PARALLEL_PREFIX) for key in official_state_dict]
    num_prefixed = sum(key.startswith(DATA_PARALLEL_PREFIX) for key in official_state_dict)
    num_copies = sum(key.startswith(FROZEN_COPY_PREFIX) for key in keys)
    num_sub_mean = sum(key in SUB_MEAN_KEYS for key in keys)
    print(f"read {len(keys)} tensors from {input_path}")
    if num_prefixed:
        print(f"  stripped '{DATA_PARALLEL_PREFIX}' from {num_prefixed} keys")
    if num_copies:
        print(
            f"  dropped {num_copies} {FROZEN_COPY_PREFIX}* tensors (the frozen copy, rebuilt during training)"
        )
    if num_sub_mean:
        print("  checked LTE.sub_mean against the ImageNet normalisation, dropped it (the LTE applies it)")
    print("  renamed MainNet.* -> main_net.*, LTE.* -> lte.*")
    config = ", ".join(f"{key}={value}" for key, value in generator.config.items())
    num_parameters = sum(parameter.numel() for parameter in generator.parameters())
    print(f"inferred generator config: {config}")
    print(
        f"wrote {output_path} ({GENERATOR_FORMAT} v{GENERATOR_FORMAT_VERSION}, "
        f"{len(generator.state_dict())} tensors, {num_parameters:,} parameters)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ttsr_lightning.official", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser(
        "convert", help="official TTSR.pt / TTSR-rec.pt -> generator-only checkpoint"
    )
    convert.add_argument(
        "input", help="official state dict (TTSR.pt, TTSR-rec.pt, or a trainer's model_*.pt)"
    )
    convert.add_argument("output", help="generator-only checkpoint to write (e.g. TTSR.ckpt)")
    args = parser.parse_args(argv)
    _convert(args.input, args.output)


if __name__ == "__main__":
    main()
