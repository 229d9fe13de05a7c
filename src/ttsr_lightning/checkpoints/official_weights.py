"""The official trainer's weights (researchmm/TTSR ``TTSR.pt`` / ``TTSR-rec.pt``) and their conversion.

A flat state dict: keys ``MainNet.*`` and ``LTE.*``, optionally DataParallel's ``module.`` prefix and
the frozen ``LTE_copy.*``, no configuration. The fixed ImageNet normalisation ``LTE.sub_mean.*`` is a
buffer-free module here, so it is checked against the ImageNet mean/std and dropped; the architecture
(``n_feats``, ``num_res_blocks``) is read off the tensors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ttsr_lightning.checkpoints.weights import GeneratorWeights
from ttsr_lightning.errors import CheckpointError
from ttsr_lightning.models.vgg19 import IMAGENET_MEAN, IMAGENET_STD

OFFICIAL_PREFIXES = {"MainNet.": "main_net.", "LTE.": "lte."}
DATA_PARALLEL_PREFIX = "module."
OFFICIAL_FROZEN_COPY_PREFIX = "LTE_copy."
SUB_MEAN_KEYS = ("LTE.sub_mean.weight", "LTE.sub_mean.bias")

# Residual-block groups present in both the CSFI and the single-path main network, one per entry of
# num_res_blocks (SFE, stage x1, x2, x4).
_BLOCK_GROUPS = ("main_net.SFE.RBs", "main_net.RB11", "main_net.RB22", "main_net.RB33")


def is_official_state_dict(loaded: Mapping[Any, Any]) -> bool:
    """Whether a file's top level is the official state dict (``MainNet.*`` / ``LTE.*`` keys)."""
    return any(
        isinstance(name, str) and name.removeprefix(DATA_PARALLEL_PREFIX).startswith(tuple(OFFICIAL_PREFIXES))
        for name in loaded
    )


def official_weights(loaded: Mapping[str, Any], path: Path, source: str) -> GeneratorWeights:
    """The generator weights of an official state dict (``loaded``, read from ``path``)."""
    not_tensors = [str(name) for name, value in loaded.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"{source}: an official state dict must map names to tensors; not tensors: {not_tensors[:5]}"
        )
    state_dict, notes = official_to_project_state_dict(loaded, source)
    # the official MainNet has no global skip from the bicubic input
    config = {**infer_generator_config(state_dict, source), "bicubic_residual": False}
    description = f"official TTSR state dict ({len(loaded)} tensors)"
    return GeneratorWeights(path, "official", config, state_dict, description, notes)


def _imagenet_sub_mean() -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (3, 3, 1, 1) and bias (3,) of the official ``LTE.sub_mean``: [0, 1] images -> ImageNet
    mean/std."""
    std = torch.tensor(IMAGENET_STD)
    return (torch.eye(3) / std.view(3, 1)).view(3, 3, 1, 1), -torch.tensor(IMAGENET_MEAN) / std


def check_sub_mean(weight: torch.Tensor, bias: torch.Tensor, source: str = "checkpoint") -> None:
    """Raises unless the official ``MeanShift`` 1x1 conv is the ImageNet normalisation of [0, 1] images."""
    expected_weight, expected_bias = _imagenet_sub_mean()
    if (
        weight.shape != expected_weight.shape
        or bias.shape != expected_bias.shape
        or not torch.allclose(weight.float(), expected_weight, atol=1e-5)
        or not torch.allclose(bias.float(), expected_bias, atol=1e-5)
    ):
        raise CheckpointError(
            f"{source}: LTE.sub_mean is not the ImageNet normalisation (mean {IMAGENET_MEAN}, std "
            f"{IMAGENET_STD}) that this LTE applies; weight {weight.flatten().tolist()}, bias {bias.tolist()}"
        )


def official_to_project_state_dict(
    official_state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """An official state dict under the generator's keys, and notes on what changed.

    Strips ``module.``, drops ``LTE_copy.*``, checks and drops ``LTE.sub_mean.*``, renames
    ``MainNet.`` -> ``main_net.`` and ``LTE.`` -> ``lte.``. Other keys stay as they are, so that
    loading reports them as unknown.
    """
    prefixed = sum(name.startswith(DATA_PARALLEL_PREFIX) for name in official_state_dict)
    state_dict = {
        name.removeprefix(DATA_PARALLEL_PREFIX): value for name, value in official_state_dict.items()
    }
    notes = [f"read {len(state_dict)} tensors"]
    if prefixed:
        notes.append(f"stripped '{DATA_PARALLEL_PREFIX}' from {prefixed} keys")
    if all(name in state_dict for name in SUB_MEAN_KEYS):
        check_sub_mean(state_dict[SUB_MEAN_KEYS[0]], state_dict[SUB_MEAN_KEYS[1]], source)
        notes.append(
            "checked LTE.sub_mean against the ImageNet normalisation, dropped it (the LTE applies it)"
        )
    copies = sum(name.startswith(OFFICIAL_FROZEN_COPY_PREFIX) for name in state_dict)
    if copies:
        notes.append(
            f"dropped {copies} {OFFICIAL_FROZEN_COPY_PREFIX}* tensors "
            "(the frozen copy, rebuilt during training)"
        )
    project_state_dict = {}
    for name, value in state_dict.items():
        if name.startswith(OFFICIAL_FROZEN_COPY_PREFIX) or name in SUB_MEAN_KEYS:
            continue
        for official_prefix, project_prefix in OFFICIAL_PREFIXES.items():
            if name.startswith(official_prefix):
                name = project_prefix + name.removeprefix(official_prefix)
                break
        project_state_dict[name] = value
    notes.append("renamed MainNet.* -> main_net.*, LTE.* -> lte.*")
    return project_state_dict, notes


def project_to_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse renaming (``main_net.`` -> ``MainNet.``, ``lte.`` -> ``LTE.``) plus the official
    ``LTE.sub_mean`` ImageNet normalisation: the file the official code loads."""
    to_official = {project: official for official, project in OFFICIAL_PREFIXES.items()}
    official = {}
    for name, value in state_dict.items():
        prefix = next((p for p in to_official if name.startswith(p)), None)
        if prefix is None:
            raise CheckpointError(f"{name}: not a generator key (expected main_net.* or lte.*)")
        official[to_official[prefix] + name.removeprefix(prefix)] = value
    official[SUB_MEAN_KEYS[0]], official[SUB_MEAN_KEYS[1]] = _imagenet_sub_mean()
    return official


def infer_generator_config(
    state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> dict[str, Any]:
    """``n_feats`` and ``num_res_blocks`` of a generator state dict (project keys), read off the tensors."""
    head_key = "main_net.SFE.conv_head.weight"
    if head_key not in state_dict:
        raise CheckpointError(f"{source}: has no {head_key}, so it is not a TTSR generator's state dict")
    num_res_blocks = []
    for group in _BLOCK_GROUPS:
        pattern = re.compile(re.escape(group) + r"\.(\d+)\.")
        indices = [int(match.group(1)) for name in state_dict if (match := pattern.match(name))]
        num_res_blocks.append(max(indices, default=-1) + 1)
    return {"n_feats": int(state_dict[head_key].shape[0]), "num_res_blocks": num_res_blocks}
