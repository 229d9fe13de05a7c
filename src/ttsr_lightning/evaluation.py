"""EvaluationModule: a generator measured on evaluation sets, and nothing else.

``evaluate`` builds exactly this around a loaded generator: no losses, no critic, no optimiser.
:class:`~ttsr_lightning.system.TTSRSystem` extends it with the training policy, so validation during
training and ``evaluate`` measure the same way.

Each evaluation set (one dataloader each; names from the DataModule's ``val_set_names`` /
``test_set_names``) gets Y-PSNR and Y-SSIM metrics (:mod:`ttsr_lightning.metrics`, the official
protocol) for the model and for the bicubic baseline (LR-up), logged as ``<stage>/<set>/<measure>``
and reduced across DDP ranks. The evaluation steps *return* the batch's per-image results
(:class:`EvaluationOutput`); callbacks keep them (``EvaluationResults``: the result files and the
W&B table, gathered from every rank; ``ImagePanelLogger``: the image panels). This module keeps no
result lists.
"""

from __future__ import annotations

from typing import Any, TypedDict, cast

from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import Metric

from ttsr_lightning.data import TestDataModule, TrainDataModule
from ttsr_lightning.errors import ConfigError
from ttsr_lightning.metrics import YPSNR, YSSIM
from ttsr_lightning.models import GeneratorOutput, TTSRGenerator

MEASURES = ("psnr", "ssim", "psnr_bicubic", "ssim_bicubic")


class EvaluationOutput(TypedDict):
    """What an evaluation step returns: the set, the batch's SR (B, 3, H, W) in [-1, 1], its soft
    attention (B, 1, H/4, W/4) or None, and one row per image (see :meth:`EvaluationModule.rows`)."""

    set: str
    set_index: int
    sr: Tensor
    soft_attention: Tensor | None
    rows: list[dict[str, Any]]


class EvaluationModule(LightningModule):
    """Validation and test of a generator on whole images (batch size 1 per set, any size).

    Args:
        generator: the generator to measure (its weights already loaded).
        crop_border: pixels shaved off each side before PSNR/SSIM (official TTSR: 0).
    """

    def __init__(self, generator: TTSRGenerator, crop_border: int = 0) -> None:
        super().__init__()
        if crop_border < 0:
            raise ConfigError(f"crop_border must be >= 0, got {crop_border}")
        self.generator = generator
        self.crop_border = crop_border
        self.eval_metrics = nn.ModuleDict()
        self.eval_set_names: dict[str, list[str]] = {"val": [], "test": []}

    def setup(self, stage: str) -> None:
        """One PSNR/SSIM pair (model and bicubic baseline) per evaluation set of the DataModule."""
        datamodule = self.trainer.datamodule  # type: ignore[attr-defined]
        if isinstance(datamodule, TrainDataModule):
            self.eval_set_names["val"] = list(datamodule.val_set_names)
        if isinstance(datamodule, TestDataModule):
            self.eval_set_names["test"] = list(datamodule.test_set_names)
        for eval_stage, names in self.eval_set_names.items():
            for name in names:
                for measure in MEASURES:
                    self._metric(eval_stage, name, measure)

    def _metric(self, stage: str, set_name: str, measure: str) -> YPSNR | YSSIM:
        key = f"{stage}__{set_name}__{measure}".replace(".", "_")  # ModuleDict keys may not contain "."
        if key not in self.eval_metrics:
            metric_class = YPSNR if measure.startswith("psnr") else YSSIM
            self.eval_metrics[key] = metric_class(crop_border=self.crop_border).to(self.device)
        return cast(YPSNR | YSSIM, self.eval_metrics[key])

    def forward(self, batch: dict[str, Any]) -> GeneratorOutput:
        return self.generator(batch["lr"], batch["lr_up"], batch["ref"], batch["ref_down_up"])

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
        values: dict[str, Tensor] = {}
        for measure in MEASURES:
            metric = self._metric(stage, set_name, measure)
            metric.update(batch["lr_up"] if measure.endswith("_bicubic") else out.sr, hr)
            values[measure] = metric.last_values
            self.log(
                f"{stage}/{set_name}/{measure}",
                metric,
                on_step=False,
                on_epoch=True,
                batch_size=batch_size,
                add_dataloader_idx=False,
                prog_bar=(measure == "psnr" and dataloader_idx == 0),
            )
        if stage == "val" and dataloader_idx == 0:
            # the monitored summary metric: PSNR on the first validation set
            summary = cast(Metric, self._metric(stage, set_name, "psnr"))
            self.log("val/psnr", summary, batch_size=batch_size)
        return EvaluationOutput(
            set=set_name,
            set_index=dataloader_idx,
            sr=out.sr.detach(),
            soft_attention=None if out.soft_attention is None else out.soft_attention.detach(),
            rows=self.rows(set_name, dataloader_idx, batch, batch_idx, values),
        )

    @staticmethod
    def rows(
        set_name: str, set_index: int, batch: dict[str, Any], batch_idx: int, values: dict[str, Tensor]
    ) -> list[dict[str, Any]]:
        """One dict per image: set, set_index (dataloader), index (in the dataset), image and ref
        (file stems), reference (the set's reference policy) and the four measures."""
        batch_size = batch["hr"].shape[0]
        indices = batch.get("index")
        rows = []
        for i in range(batch_size):
            rows.append(
                {
                    "set": set_name,
                    "set_index": set_index,
                    "index": int(indices[i]) if indices is not None else batch_idx * batch_size + i,
                    "image": _item(batch.get("name"), i),
                    "ref": _item(batch.get("ref_name"), i),
                    "reference": _item(batch.get("reference_policy"), i),
                    **{measure: float(values[measure][i]) for measure in MEASURES},
                }
            )
        return rows


def _item(values: Any, index: int) -> str:
    if values is None:
        return ""
    return str(values[index]) if isinstance(values, list | tuple) else str(values)
