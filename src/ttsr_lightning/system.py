"""TTSRSystem: the one LightningModule. All training policy lives here.

What it does, per training batch (manual optimisation, as the official `trainer.py` + `loss/loss.py`):

1. generator forward: ``sr, S, T = G(lr, lr_up, ref, ref_down_up)``;
2. reconstruction loss ``L1(sr, hr)``;
3. after ``optim.warmup_epochs`` epochs only (the official ``num_init_epochs``):
   ``optim.gan_k`` WGAN-GP critic steps on ``(sr.detach(), hr)``, then the adversarial, perceptual and
   transferal perceptual terms (the latter through a frozen copy of the current LTE);
4. one Adam step for the generator: two parameter groups, main network ``generator_lr`` and LTE ``lte_lr``.

Validation and test measure Y-channel PSNR/SSIM with the official protocol per evaluation set (and
the bicubic baseline beside it). Hyper-parameters are plain values (dicts with ``_target_``), so a
checkpoint reloads under torch's weights-only loading and rebuilds every module by itself.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import Metric

from ttsr_lightning.losses import WGANGPLoss
from ttsr_lightning.metrics import YPSNR, YSSIM
from ttsr_lightning.models import LTE, Discriminator, GeneratorOutput, TTSRGenerator

LOSS_TERMS = ("reconstruction", "perceptual", "transferal_perceptual", "adversarial")
# state-dict prefixes of frozen weights that are rebuilt rather than saved (see on_save_checkpoint)
FROZEN_PREFIXES = ("loss_terms.perceptual.", "lte_copy.")


@dataclass(frozen=True)
class OptimSettings:
    """The ``optim`` config group, validated. Errors name the key (``optim.<name>``)."""

    generator_lr: float = 1e-4
    lte_lr: float = 1e-5
    generator_betas: tuple[float, float] = (0.9, 0.999)
    discriminator_lr: float = 1e-4
    discriminator_betas: tuple[float, float] = (0.0, 0.9)
    eps: float = 1e-8
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.5
    gan_k: int = 2
    warmup_epochs: int = 2
    gradient_clip_val: float | None = None
    fused: bool = False

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> OptimSettings:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"optim: unknown key(s) {unknown}; expected some of {sorted(known)}")
        converted: dict[str, Any] = dict(values)
        for key in ("generator_betas", "discriminator_betas", "lr_milestones"):
            if key in converted:
                converted[key] = tuple(converted[key])
        settings = cls(**converted)
        settings.validate()
        return settings

    def validate(self) -> None:
        for key in ("generator_lr", "lte_lr", "discriminator_lr", "eps"):
            if getattr(self, key) < 0:
                raise ValueError(f"optim.{key} must be >= 0, got {getattr(self, key)}")
        if self.gan_k < 1:
            raise ValueError(f"optim.gan_k must be >= 1 (critic steps per generator step), got {self.gan_k}")
        if self.warmup_epochs < 0:
            raise ValueError(f"optim.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not 0 < self.lr_gamma <= 1:
            raise ValueError(f"optim.lr_gamma must be in (0, 1], got {self.lr_gamma}")
        if list(self.lr_milestones) != sorted(set(self.lr_milestones)) or any(
            m <= 0 for m in self.lr_milestones
        ):
            raise ValueError(
                f"optim.lr_milestones must be increasing positive epochs, got {self.lr_milestones}"
            )
        if self.gradient_clip_val is not None and self.gradient_clip_val <= 0:
            raise ValueError(f"optim.gradient_clip_val must be > 0 or null, got {self.gradient_clip_val}")
        for key in ("generator_betas", "discriminator_betas"):
            betas = getattr(self, key)
            if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
                raise ValueError(f"optim.{key} must be two numbers in [0, 1), got {betas}")


def validate_loss_config(losses: dict[str, Any]) -> dict[str, float]:
    """Check the ``loss`` group and return its weights; errors name ``loss.weights.<term>``."""
    weights = dict(losses.get("weights", {}))
    unknown = sorted(set(weights) - set(LOSS_TERMS))
    if unknown:
        raise ValueError(f"loss.weights: unknown term(s) {unknown}; expected some of {list(LOSS_TERMS)}")
    for term in LOSS_TERMS:
        weight = float(weights.setdefault(term, 0.0))
        if weight < 0:
            raise ValueError(f"loss.weights.{term} must be >= 0, got {weight}")
        if weight > 0 and term not in losses:
            raise ValueError(f"loss.{term} must be configured (a _target_) when loss.weights.{term} > 0")
        weights[term] = weight
    if weights["reconstruction"] == 0 and sum(weights.values()) == 0:
        raise ValueError("loss.weights: every weight is 0, nothing would be optimised")
    return weights


class TTSRSystem(LightningModule):
    """TTSR training, validation and test.

    Args:
        generator: config of the generator (``_target_`` + constructor args), e.g. ``conf/model/ttsr.yaml``.
        discriminator: config of the WGAN-GP critic; built only when the adversarial weight is > 0.
        losses: the ``loss`` group: one ``_target_`` per term and ``weights`` (see ``LOSS_TERMS``).
        optim: the ``optim`` group (see ``OptimSettings``).
        num_image_panels: evaluation images per set kept for the image panels callback.
        crop_border: pixels shaved off each side before PSNR/SSIM (official: 0).
        lazy_lte_copy_sync: copy the LTE into its frozen twin only when the LTE changed since the last copy.
        channels_last: keep weights and image batches in channels-last memory format (faster
            convolutions on tensor cores; same results up to rounding).
        compile: ``torch.compile`` the main network, the LTE and the perceptual VGG in place (keys
            unchanged). The critic stays eager: its gradient penalty needs double backward.
    """

    def __init__(
        self,
        generator: dict[str, Any],
        discriminator: dict[str, Any] | None,
        losses: dict[str, Any],
        optim: dict[str, Any],
        num_image_panels: int = 4,
        crop_border: int = 0,
        lazy_lte_copy_sync: bool = True,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.optim_settings = OptimSettings.from_dict(dict(optim))
        self.loss_weights = validate_loss_config(dict(losses))
        if crop_border < 0:
            raise ValueError(f"system.crop_border must be >= 0, got {crop_border}")

        self.generator: TTSRGenerator = instantiate(generator)
        uses_adversarial = self.loss_weights["adversarial"] > 0
        if uses_adversarial and discriminator is None:
            raise ValueError("model.discriminator must be configured when loss.weights.adversarial > 0")
        self.discriminator: Discriminator | None = instantiate(discriminator) if uses_adversarial else None
        self.loss_terms = nn.ModuleDict(
            {term: instantiate(losses[term]) for term in LOSS_TERMS if self.loss_weights[term] > 0}
        )
        # Frozen twin of the LTE for the transferal perceptual loss (the official LTE_copy).
        self.lte_copy: LTE | None = None
        if "transferal_perceptual" in self.loss_terms:
            if self.generator.lte is None:
                raise ValueError(
                    "loss.weights.transferal_perceptual must be 0 for a generator without texture transfer "
                    "(model.generator.hard_attention=false)"
                )
            self.lte_copy = copy.deepcopy(self.generator.lte).requires_grad_(False).eval()
        self._lte_copy_stale = True

        self.num_image_panels = num_image_panels
        self.crop_border = crop_border
        self.lazy_lte_copy_sync = lazy_lte_copy_sync
        self.channels_last = channels_last
        self.compile_modules = compile
        # Training batches done (not optimiser steps: Lightning's global_step counts those); checkpointed.
        self.batches_seen = 0
        self.eval_metrics = nn.ModuleDict()
        self.eval_set_names: dict[str, list[str]] = {}
        self.test_rows: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        """Create one PSNR/SSIM pair (model and bicubic baseline) per evaluation set."""
        datamodule = getattr(self.trainer, "datamodule", None)
        for eval_stage, attribute in (("val", "val_set_names"), ("test", "test_set_names")):
            names = list(getattr(datamodule, attribute, []) or [])
            self.eval_set_names[eval_stage] = names
            for name in names:
                for kind in ("psnr", "ssim", "psnr_bicubic", "ssim_bicubic"):
                    key = self._metric_key(eval_stage, name, kind)
                    if key not in self.eval_metrics:
                        metric = YPSNR if kind.startswith("psnr") else YSSIM
                        self.eval_metrics[key] = metric(crop_border=self.crop_border)

    def configure_model(self) -> None:
        """Speed options, applied once the module is on its device."""
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        if self.compile_modules:
            self.generator.main_net.compile()
            if self.generator.lte is not None:
                self.generator.lte.compile()
            if "perceptual" in self.loss_terms:
                self.loss_terms["perceptual"].compile()

    @staticmethod
    def _metric_key(stage: str, set_name: str, kind: str) -> str:
        # ModuleDict keys may not contain "."
        return f"{stage}__{set_name}__{kind}".replace(".", "_")

    def configure_optimizers(self) -> Any:
        s = self.optim_settings
        lte = self.generator.lte
        lte_params = [] if lte is None else [p for p in lte.parameters() if p.requires_grad]
        lte_ids = {id(p) for p in lte_params}
        main_params = [p for p in self.generator.parameters() if p.requires_grad and id(p) not in lte_ids]
        groups = [{"params": main_params, "lr": s.generator_lr, "name": "generator"}]
        if lte_params:
            groups.append({"params": lte_params, "lr": s.lte_lr, "name": "lte"})
        fused = {"fused": True} if s.fused else {}
        generator_opt = torch.optim.Adam(groups, betas=s.generator_betas, eps=s.eps, **fused)
        configs: list[dict[str, Any]] = [
            {
                "optimizer": generator_opt,
                "lr_scheduler": torch.optim.lr_scheduler.MultiStepLR(
                    generator_opt, milestones=list(s.lr_milestones), gamma=s.lr_gamma
                ),
            }
        ]
        if self.discriminator is not None:
            critic_opt = torch.optim.Adam(
                self.discriminator.parameters(),
                lr=s.discriminator_lr,
                betas=s.discriminator_betas,
                eps=s.eps,
                **fused,
            )
            configs.append({"optimizer": critic_opt})
        return configs

    # ------------------------------------------------------------------ training
    @property
    def _adversarial(self) -> WGANGPLoss:
        return cast(WGANGPLoss, self.loss_terms["adversarial"])

    @property
    def in_warmup(self) -> bool:
        """Reconstruction-only phase (the official init epochs)."""
        return self.current_epoch < self.optim_settings.warmup_epochs

    def forward(self, batch: dict[str, Tensor]) -> GeneratorOutput:
        images = [batch[key] for key in ("lr", "lr_up", "ref", "ref_down_up")]
        if self.channels_last:
            images = [image.contiguous(memory_format=torch.channels_last) for image in images]
        return self.generator(*images)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        generator_opt = optimizers[0]
        hr = batch["hr"]
        out = self(batch)
        terms: dict[str, Tensor] = {"reconstruction": self.loss_terms["reconstruction"](out.sr, hr)}
        logs: dict[str, Tensor] = {}
        if not self.in_warmup:
            if self.discriminator is not None:
                logs.update(self._critic_steps(optimizers[1], real=hr, fake=out.sr.detach()))
                with _frozen(self.discriminator):
                    terms["adversarial"] = self._adversarial.generator_loss(self.discriminator, out.sr)
            if "perceptual" in self.loss_terms:
                terms["perceptual"] = self.loss_terms["perceptual"](out.sr, hr)
            if "transferal_perceptual" in self.loss_terms:
                terms["transferal_perceptual"] = self._transferal_perceptual(out)
        total = sum(self.loss_weights[term] * value for term, value in terms.items())
        assert isinstance(total, Tensor)

        generator_opt.zero_grad(set_to_none=True)
        self.manual_backward(total)
        if self.optim_settings.gradient_clip_val is not None:
            self.clip_gradients(
                cast(Any, generator_opt),
                gradient_clip_val=self.optim_settings.gradient_clip_val,
                gradient_clip_algorithm="norm",
            )
        generator_opt.step()
        self._lte_copy_stale = True
        self.batches_seen += 1

        batch_size = hr.shape[0]
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=batch_size)
        for term, value in terms.items():
            self.log(
                f"train/loss_{term}", value.detach(), prog_bar=term != "reconstruction", batch_size=batch_size
            )
        for key, value in logs.items():
            self.log(key, value, batch_size=batch_size)
        self.log("train/warmup", float(self.in_warmup), batch_size=batch_size)
        for group in generator_opt.param_groups:
            self.log(f"lr/{group['name']}", group["lr"], batch_size=batch_size)
        return total.detach()

    def _critic_steps(self, critic_opt: Any, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """``gan_k`` WGAN-GP critic updates on (real, fake); returns the last step's statistics."""
        assert self.discriminator is not None
        adversarial = self._adversarial
        stats: dict[str, Tensor] = {}
        for _ in range(self.optim_settings.gan_k):
            critic_loss, step_stats = adversarial.critic_loss(self.discriminator, real, fake)
            critic_opt.zero_grad(set_to_none=True)
            self.manual_backward(critic_loss)
            critic_opt.step()
            stats = {
                "critic/loss": critic_loss.detach(),
                **{f"critic/{k}": v.detach() for k, v in step_stats.items()},
            }
        return stats

    def _transferal_perceptual(self, out: GeneratorOutput) -> Tensor:
        """Texture features of sr from the frozen LTE copy against the transferred textures T."""
        assert self.lte_copy is not None and self.generator.lte is not None
        if self._lte_copy_stale or not self.lazy_lte_copy_sync:
            # copy_ keeps the copy's tensors (and their device) in place
            with torch.no_grad():
                for target, source in zip(
                    self.lte_copy.state_dict().values(), self.generator.lte.state_dict().values(), strict=True
                ):
                    target.copy_(source)
            self._lte_copy_stale = False
        sr_features = self.lte_copy(out.sr)
        return self.loss_terms["transferal_perceptual"](
            sr_features, out.t_lv3, out.t_lv2, out.t_lv1, out.soft_attention
        )

    def on_train_epoch_end(self) -> None:
        # the learning-rate schedule counts epochs after the warm-up, as the official StepLR
        if not self.in_warmup:
            schedulers = self.lr_schedulers()
            for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
                if scheduler is not None:
                    scheduler.step()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["batches_seen"] = self.batches_seen
        checkpoint["rng_states"] = rng_states()
        # Frozen weights that are fixed (perceptual VGG19) or derived (the LTE copy) stay out of
        # checkpoints: 80 MB each otherwise.
        for key in [k for k in checkpoint["state_dict"] if k.startswith(FROZEN_PREFIXES)]:
            del checkpoint["state_dict"][key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state_dict = checkpoint["state_dict"]
        for key, value in self.state_dict().items():
            if key.startswith(FROZEN_PREFIXES):
                state_dict.setdefault(key, value)
        self.batches_seen = int(checkpoint.get("batches_seen", 0))
        if "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])
        self._lte_copy_stale = True

    # ------------------------------------------------------------------ evaluation
    def validation_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        return self._evaluation_step("val", batch, batch_idx, dataloader_idx)

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        return self._evaluation_step("test", batch, batch_idx, dataloader_idx)

    def _evaluation_step(
        self, stage: str, batch: dict[str, Any], batch_idx: int, dataloader_idx: int
    ) -> dict[str, Any]:
        names = self.eval_set_names.get(stage) or [f"set{dataloader_idx}"]
        set_name = names[dataloader_idx]
        out = self(batch)
        hr = batch["hr"]
        batch_size = hr.shape[0]
        values: dict[str, Tensor] = {}
        for kind, image in (("", out.sr), ("_bicubic", batch["lr_up"])):
            for measure in ("psnr", "ssim"):
                key = self._metric_key(stage, set_name, measure + kind)
                if key not in self.eval_metrics:  # evaluation without a datamodule that names its sets
                    metric_cls = YPSNR if measure == "psnr" else YSSIM
                    self.eval_metrics[key] = metric_cls(crop_border=self.crop_border).to(self.device)
                metric = cast(YPSNR | YSSIM, self.eval_metrics[key])
                metric.update(image, hr)
                if stage == "test":  # per-image rows for the results CSV
                    values[measure + kind] = metric.last_values
                self.log(
                    f"{stage}/{set_name}/{measure}{kind}",
                    metric,
                    on_step=False,
                    on_epoch=True,
                    batch_size=batch_size,
                    add_dataloader_idx=False,
                    prog_bar=(measure == "psnr" and kind == "" and dataloader_idx == 0),
                )
        if stage == "val" and dataloader_idx == 0:
            # the monitored summary metric: PSNR on the first validation set
            summary = cast(Metric, self.eval_metrics[self._metric_key(stage, set_name, "psnr")])
            self.log("val/psnr", summary, batch_size=batch_size)
        if stage == "test":
            for i in range(batch_size):
                self.test_rows.append(
                    {
                        "set": set_name,
                        "image": _item(batch.get("name"), i),
                        "ref": _item(batch.get("ref_name"), i),
                        **{key: float(v[i]) for key, v in values.items()},
                    }
                )
        return {"set_name": set_name, "sr": out.sr.detach(), "soft_attention": _detach(out.soft_attention)}

    def on_test_epoch_start(self) -> None:
        self.test_rows = []


class _frozen:
    """Context manager: a module's parameters need no gradient inside (the critic during the G step)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.flags: list[bool] = []

    def __enter__(self) -> None:
        self.flags = [p.requires_grad for p in self.module.parameters()]
        self.module.requires_grad_(False)

    def __exit__(self, *exc: object) -> None:
        for p, flag in zip(self.module.parameters(), self.flags, strict=True):
            p.requires_grad_(flag)


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states, as plain values and tensors."""
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state_plain(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["torch_cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(_as_tuple(states["python"]))
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(states["torch"])
    if "torch_cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch_cuda"])


def _numpy_state_plain() -> dict[str, Any]:
    """NumPy's legacy MT19937 state without numpy arrays (checkpoints load weights-only)."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {
        "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }


def _as_tuple(value: Any) -> Any:
    """Checkpoint round trips turn the tuples of ``random.getstate()`` into lists; undo that."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def _item(values: Any, index: int) -> str:
    if values is None:
        return ""
    return str(values[index]) if isinstance(values, list | tuple) else str(values)


def _detach(value: Tensor | None) -> Tensor | None:
    return None if value is None else value.detach()
