"""What a run's speed options changed in its first training batch, seen from inside the computation:
the layout and dtype a convolution of the generator produced, the batches its texture extractor ran,
the optimisers' ``fused`` flag and the graphs Dynamo compiled."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn


class OptionsInEffect(Callback):
    """Records, for the first training batch: ``conv_dtype`` and ``conv_channels_last`` (the output of
    the generator's first convolution), ``extractor_batches`` (the batch size of each call of its LTE),
    ``fused`` (every optimiser parameter group's flag) and ``compiled_graphs`` (Dynamo's count of
    unique graphs once the batch has run). Read from ``OptionsInEffect.seen`` after ``train``."""

    seen: dict[str, Any] = {}

    def __init__(self) -> None:
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step > 0 or self._handles:
            return
        OptionsInEffect.seen = {"extractor_batches": []}
        generator = pl_module.generator
        first_conv = next(module for module in generator.modules() if isinstance(module, nn.Conv2d))

        def conv_output(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            OptionsInEffect.seen.setdefault("conv_dtype", output.dtype)
            OptionsInEffect.seen.setdefault(
                "conv_channels_last", output.is_contiguous(memory_format=torch.channels_last)
            )

        def extractor_input(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            OptionsInEffect.seen["extractor_batches"].append(inputs[0].shape[0])

        self._handles = [
            first_conv.register_forward_hook(conv_output),
            generator.lte.register_forward_pre_hook(extractor_input),
        ]

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._handles:
            return
        for handle in self._handles:
            handle.remove()
        self._handles = []
        OptionsInEffect.seen["fused"] = [
            bool(group.get("fused")) for optimizer in trainer.optimizers for group in optimizer.param_groups
        ]
        OptionsInEffect.seen["compiled_graphs"] = torch._dynamo.utils.counters["stats"]["unique_graphs"]
