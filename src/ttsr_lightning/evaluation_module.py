"""EvaluationModule: a generator measured on evaluation sets, and nothing else.

``evaluate`` builds exactly this around a loaded generator: no losses, no critic, no optimiser.
:class:`~ttsr_lightning.system.TTSRSystem` extends it with the training policy, so validation during
training and ``evaluate`` measure the same way.

Each evaluation set (one dataloader each; names from the DataModule's ``val_set_names`` /
``test_set_names``) is scored under each :class:`~ttsr_lightning.protocols.Protocol` (validation: the
first only), for the model and for the bicubic baseline (LR-up). Each mean is a
:class:`~ttsr_lightning.metrics.MeanPerImage` over the set's images gathered from every DDP rank (the
same mean, summed in the same order, as the per-set results written from the rows), logged as
``<stage>/<set>/<measure>`` for the first protocol and ``<stage>/<set>/<protocol>/<measure>`` for the
others. With an LPIPS network (``lpips``), each image's LPIPS (lower is better) is measured once on its
8-bit RGB pixels (what ``save_images`` writes), whatever the protocol, logged as ``<stage>/<set>/lpips``
and ``lpips_bicubic`` and put in every protocol's row.
The evaluation steps *return* the batch's per-image results (:class:`EvaluationOutput`: one row per
image and protocol); callbacks keep them (``EvaluationResults``: the result files and the W&B table,
gathered from every rank; ``ImagePanelLogger``: the image panels). This module keeps no result lists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypedDict, cast

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import Metric

from ttsr_lightning.budgeted import (
    DEFAULT_HALO,
    MemorySetting,
    budgeted_forward,
    memory_budget,
    plan_for_inputs,
)
from ttsr_lightning.data import TestDataModule, TrainDataModule
from ttsr_lightning.lpips_setting import LpipsSetting, load_lpips
from ttsr_lightning.metrics import MeanDistancePerImage, MeanPerImage, image_values
from ttsr_lightning.models import GeneratorOutput, TTSRGenerator
from ttsr_lightning.models.lpips import LPIPS
from ttsr_lightning.protocols import DEFAULT_PROTOCOL, Protocol, load_protocols
from ttsr_lightning.result_files import LPIPS_MEASURES, MEASURES

log = logging.getLogger(__name__)


class EvaluationOutput(TypedDict):
    """What an evaluation step returns: the set, the batch's SR (B, 3, H, W) in [-1, 1], its soft
    attention (B, 1, H/4, W/4) or None, and one row per image and protocol (see :meth:`rows`)."""

    set: str
    set_index: int
    sr: Tensor
    soft_attention: Tensor | None
    rows: list[dict[str, Any]]


class EvaluationModule(LightningModule):
    """Validation and test of a generator on whole images (batch size 1 per set, any size).

    Args:
        generator: the generator to measure (its weights already loaded): TTSR or any module of
            :mod:`ttsr_lightning.models.interface`.
        protocols: the conventions to score under, the first one the primary (validation, the
            unprefixed log keys); default: the official TTSR evaluation alone.
        max_memory: a memory budget for each image's forward pass (bytes, ``"auto"``: a share of the
            device's free memory, divided among the processes on one CPU machine), run by
            :func:`~ttsr_lightning.budgeted.budgeted_forward`: the whole image when it
            fits (the same SR as the plain forward), else main-network tiles (the first plan of each
            kind is logged). None, or a generator other than TTSR: the generator's plain forward.
        lpips: LPIPS beside PSNR/SSIM: ``"auto"`` (when the AlexNet weights are found, else skipped with
            one warning), ``True`` (required), ``False``, or the AlexNet file's path; see
            :func:`~ttsr_lightning.lpips_setting.load_lpips`. ``lpips_description`` says what was used.
        halo: LR pixels of context around each main-network tile (when ``max_memory`` tiles).
    """

    def __init__(
        self,
        generator: nn.Module,
        protocols: Sequence[Protocol] | None = None,
        max_memory: MemorySetting = None,
        lpips: LpipsSetting = False,
        halo: int = DEFAULT_HALO,
    ) -> None:
        super().__init__()
        self.generator = generator
        self.lpips: LPIPS | None
        self.lpips, self.lpips_description = load_lpips(lpips)
        self.protocols = list(protocols) if protocols else load_protocols(DEFAULT_PROTOCOL)
        self.eval_metrics = nn.ModuleDict()
        self.eval_set_names: dict[str, list[str]] = {"val": [], "test": []}
        self.max_memory = max_memory
        self.halo = halo
        self._memory_budget: int | None = None  # max_memory in bytes, resolved at the first image
        self._plans_logged: set[bool] = set()  # tiled or not: each kind of plan is logged once

    @property
    def frozen_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of the weights this module rebuilds itself and run checkpoints leave
        out (:func:`ttsr_lightning.checkpoints.run_checkpoint.strip_frozen_weights`): the LPIPS network."""
        return ("lpips.",)

    def setup(self, stage: str) -> None:
        """The metrics of every evaluation set of the DataModule, made before the first batch."""
        datamodule = self.trainer.datamodule  # type: ignore[attr-defined]
        if isinstance(datamodule, TrainDataModule):
            self.eval_set_names["val"] = list(datamodule.val_set_names)
        if isinstance(datamodule, TestDataModule):
            self.eval_set_names["test"] = list(datamodule.test_set_names)
        for eval_stage, names in self.eval_set_names.items():
            for name in names:
                for protocol in self._protocols(eval_stage):
                    for measure in MEASURES:
                        self._metric(eval_stage, name, protocol, measure)
                if self.lpips is not None:
                    for measure in LPIPS_MEASURES:
                        self._lpips_metric(eval_stage, name, measure)

    def _protocols(self, stage: str) -> list[Protocol]:
        return self.protocols if stage == "test" else self.protocols[:1]

    def _metric(self, stage: str, set_name: str, protocol: Protocol, measure: str) -> MeanPerImage:
        key = f"{stage}__{set_name}__{protocol.name}__{measure}".replace(
            ".", "_"
        )  # no "." in ModuleDict keys
        if key not in self.eval_metrics:
            score = protocol.psnr if measure.startswith("psnr") else protocol.ssim
            self.eval_metrics[key] = MeanPerImage(score).to(self.device)
        return cast(MeanPerImage, self.eval_metrics[key])

    def _lpips_metric(self, stage: str, set_name: str, measure: str) -> MeanPerImage:
        key = f"{stage}__{set_name}__{measure}".replace(".", "_")
        if key not in self.eval_metrics:
            assert self.lpips is not None
            self.eval_metrics[key] = MeanDistancePerImage(_eight_bit_lpips(self.lpips)).to(self.device)
        return cast(MeanPerImage, self.eval_metrics[key])

    def forward(self, batch: dict[str, Any]) -> GeneratorOutput:
        inputs = (batch["lr"], batch["lr_up"], batch["ref"], batch["ref_down_up"])
        if self.max_memory is None or not isinstance(self.generator, TTSRGenerator):
            return self.generator(*inputs)
        if self._memory_budget is None:
            processes = (
                self.trainer.num_devices if self._trainer is not None and self.device.type == "cpu" else 1
            )
            self._memory_budget = memory_budget(self.max_memory, self.device, processes)
        plan = plan_for_inputs(self.generator, batch["lr"], batch["ref"], self._memory_budget, self.halo)
        if plan.tiled not in self._plans_logged:
            self._plans_logged.add(plan.tiled)
            log.info("max_memory=%s: %s", self.max_memory, plan.describe())
        return budgeted_forward(self.generator, *inputs, plan)

    def validation_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> EvaluationOutput:
        return self._evaluation_step("val", batch, batch_idx, dataloader_idx)

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> EvaluationOutput:
        return self._evaluation_step("test", batch, batch_idx, dataloader_idx)

    def _evaluation_step(
        self, stage: str, batch: dict[str, Any], batch_idx: int, dataloader_idx: int
    ) -> EvaluationOutput:
        names = self.eval_set_names.get(stage) or []
        set_name = names[dataloader_idx] if dataloader_idx < len(names) else f"set{dataloader_idx}"
        out = self(batch)
        hr = batch["hr"]
        batch_size = hr.shape[0]
        indices = self.image_indices(batch, batch_idx)
        lpips_values: dict[str, Tensor] = {}
        if self.lpips is not None:
            for measure in LPIPS_MEASURES:
                metric = self._lpips_metric(stage, set_name, measure)
                metric.update(batch["lr_up"] if measure.endswith("_bicubic") else out.sr, hr, indices)
                lpips_values[measure] = metric.last_values
                self.log(
                    f"{stage}/{set_name}/{measure}",
                    metric,
                    on_step=False,
                    on_epoch=True,
                    batch_size=batch_size,
                    add_dataloader_idx=False,
                )
        rows = []
        for number, protocol in enumerate(self._protocols(stage)):
            values: dict[str, Tensor] = {}
            for measure in MEASURES:
                metric = self._metric(stage, set_name, protocol, measure)
                metric.update(batch["lr_up"] if measure.endswith("_bicubic") else out.sr, hr, indices)
                values[measure] = metric.last_values
                prefix = f"{stage}/{set_name}/" if number == 0 else f"{stage}/{set_name}/{protocol.name}/"
                self.log(
                    prefix + measure,
                    metric,
                    on_step=False,
                    on_epoch=True,
                    batch_size=batch_size,
                    add_dataloader_idx=False,
                    prog_bar=(number == 0 and measure == "psnr" and dataloader_idx == 0),
                )
            values.update(lpips_values)
            rows += self.rows(set_name, dataloader_idx, (number, protocol.name), batch, indices, values)
        if stage == "val" and dataloader_idx == 0:
            # the monitored summary metric: PSNR on the first validation set, primary protocol
            summary = cast(Metric, self._metric(stage, set_name, self.protocols[0], "psnr"))
            self.log("val/psnr", summary, batch_size=batch_size, add_dataloader_idx=False)
        return EvaluationOutput(
            set=set_name,
            set_index=dataloader_idx,
            sr=out.sr.detach(),
            soft_attention=None if out.soft_attention is None else out.soft_attention.detach(),
            rows=rows,
        )

    @staticmethod
    def image_indices(batch: dict[str, Any], batch_idx: int) -> list[int]:
        """The batch's images' indices in their set: the dataset's ``index``, else their position in
        the loader's order."""
        batch_size = batch["hr"].shape[0]
        indices = batch.get("index")
        if indices is None:
            return [batch_idx * batch_size + i for i in range(batch_size)]
        return [int(index) for index in indices]

    @staticmethod
    def rows(
        set_name: str,
        set_index: int,
        protocol: tuple[int, str],
        batch: dict[str, Any],
        indices: list[int],
        values: dict[str, Tensor],
    ) -> list[dict[str, Any]]:
        """One dict per image: set, set_index (dataloader), index (in the dataset: ``indices``, see
        :meth:`image_indices`), image and ref (file stems), reference (the set's reference policy),
        protocol (its name; protocol_index its position) and the measures in ``values`` (the four of
        :data:`~ttsr_lightning.result_files.MEASURES`, then LPIPS's when measured)."""
        rows = []
        for i, index in enumerate(indices):
            rows.append(
                {
                    "set": set_name,
                    "set_index": set_index,
                    "index": index,
                    "image": _item(batch.get("name"), i),
                    "ref": _item(batch.get("ref_name"), i),
                    "reference": _item(batch.get("reference_policy"), i),
                    "protocol": protocol[1],
                    "protocol_index": protocol[0],
                    **{measure: float(value[i]) for measure, value in values.items()},
                }
            )
        return rows


def _eight_bit_lpips(network: LPIPS) -> Callable[[Tensor, Tensor], Tensor]:
    """Per-image LPIPS (B,) float64 of two (B, 3, H, W) images in [-1, 1], measured on their 8-bit
    pixels (``round(clamp((x + 1) / 2) * 255)``, back to [-1, 1]): the values ``score`` gets from the
    saved PNGs, in float32 also under mixed precision. A closure, not a module, so the metric holds no
    second copy of the network."""

    def measure(sr: Tensor, hr: Tensor) -> Tensor:
        sr_pixels, hr_pixels = (image_values(image, "clamp_round") / 127.5 - 1.0 for image in (sr, hr))
        with torch.autocast(sr.device.type, enabled=False):
            distance = network(sr_pixels.to(torch.float32), hr_pixels.to(torch.float32))
        return distance.to(torch.float64)

    return measure


def _item(values: Any, index: int) -> str:
    if values is None:
        return ""
    return str(values[index]) if isinstance(values, list | tuple) else str(values)
