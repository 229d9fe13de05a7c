"""TTSRSystem: the training policy. Evaluation is inherited from :class:`EvaluationModule`.

What it does, per training batch (manual optimisation, as the official ``trainer.py`` + ``loss/loss.py``):

1. generator forward: ``sr, S, T = G(lr, lr_up, ref, ref_down_up)``;
2. reconstruction loss ``L1(sr, hr)``;
3. after ``optim.warmup_epochs`` epochs only (the official ``num_init_epochs``):
   ``optim.gan_k`` WGAN-GP critic steps on ``(sr.detach(), hr)``, then the adversarial, perceptual and
   transferal perceptual terms (the latter through a frozen copy of the current LTE);
4. one Adam step for the generator: two parameter groups, main network ``generator_lr`` and LTE ``lte_lr``.

A loss term is on iff its weight (``loss.weights.<term>``) is > 0; terms that are off are not built
(no VGG19, no critic for TTSR-rec). Before every optimiser step the loss terms and the gradients are
checked: a NaN or infinity stops the run with :class:`NonFiniteError` naming the term, the epoch and
the batch (all ranks decide together), so no optimiser step and no checkpoint ever sees it;
``optim.max_nonfinite_skips`` lets a run skip up to that many such batches with a warning each.

Hyper-parameters are plain values (dicts with ``_target_``), so a checkpoint reloads under torch's
weights-only loading and rebuilds every module by itself. Config validation lives in
:mod:`ttsr_lightning.settings`, checkpoint contents in :mod:`ttsr_lightning.checkpoints`, the batch
counter and RNG states in the ``ResumeCheckpoint`` callback.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, cast

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from ttsr_lightning.checkpoints import restore_frozen_weights, strip_frozen_weights
from ttsr_lightning.errors import ConfigError, NonFiniteError
from ttsr_lightning.evaluation import EvaluationModule
from ttsr_lightning.losses import WGANGPLoss
from ttsr_lightning.models import LTE, Discriminator, GeneratorOutput, TTSRGenerator
from ttsr_lightning.protocols import protocols_from_config
from ttsr_lightning.settings import OptimSettings, loss_weights


class TTSRSystem(EvaluationModule):
    """TTSR training (validation and test as :class:`EvaluationModule`).

    Args:
        generator: config of the generator (``_target_`` + constructor args), e.g. ``conf/model/ttsr.yaml``.
        discriminator: config of the WGAN-GP critic; built only when the adversarial weight is > 0.
        losses: the ``loss`` group: one ``_target_`` config per term and ``weights`` (a term is on iff
            its weight is > 0; see :func:`ttsr_lightning.settings.loss_weights`).
        optim: the ``optim`` group (see :class:`ttsr_lightning.settings.OptimSettings`).
        protocols: the ``protocol`` group ({name: fields}, conf/protocol/): how validation and test
            measure; the first is the primary (validation, the monitored ``val/psnr``). Default: the
            official TTSR evaluation.
        lazy_lte_copy_sync: copy the LTE into its frozen twin only when the LTE changed since the last copy.
        lpips: LPIPS in validation and test beside PSNR/SSIM: ``"auto"``, ``True``, ``False`` or the
            AlexNet weights file (see :class:`EvaluationModule`).
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
        protocols: dict[str, dict[str, Any]] | None = None,
        lazy_lte_copy_sync: bool = True,
        channels_last: bool = False,
        compile: bool = False,
        lpips: bool | str = "auto",
    ) -> None:
        optim_settings = OptimSettings.from_dict(dict(optim))
        weights = loss_weights(losses)
        built_generator = _build(generator, "model.generator")
        if not isinstance(built_generator, TTSRGenerator):
            raise ConfigError(
                f"model.generator: expected a TTSRGenerator config, got {type(built_generator).__name__}"
            )
        super().__init__(
            built_generator, protocols_from_config(protocols) if protocols else None, lpips=lpips
        )
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.optim_settings = optim_settings
        self.loss_weights = weights

        uses_adversarial = weights["adversarial"] > 0
        if uses_adversarial and discriminator is None:
            raise ConfigError("model.discriminator must be configured when loss.weights.adversarial > 0")
        self.discriminator: Discriminator | None = instantiate(discriminator) if uses_adversarial else None
        self.loss_terms = nn.ModuleDict(
            {term: instantiate(losses[term]) for term, w in weights.items() if w > 0}
        )
        # Frozen twin of the LTE for the transferal perceptual loss (the official LTE_copy).
        self.lte_copy: LTE | None = None
        if "transferal_perceptual" in self.loss_terms:
            if self.generator.lte is None:
                raise ConfigError(
                    "loss.weights.transferal_perceptual must be 0 for a generator without texture transfer "
                    "(model.generator.use_hard_attention=false)"
                )
            self.lte_copy = copy.deepcopy(self.generator.lte).requires_grad_(False).eval()
        self._lte_copy_stale = True
        self.lazy_lte_copy_sync = lazy_lte_copy_sync
        self.channels_last = channels_last
        self.compile_modules = compile
        # batches skipped for a non-finite loss or gradient (optim.max_nonfinite_skips); checkpointed
        self.nonfinite_skips = 0

    # ------------------------------------------------------------------ set-up
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

    def forward(self, batch: dict[str, Any]) -> GeneratorOutput:
        if self.channels_last:  # references may be lists (multi-reference evaluation sets)
            batch = {
                **batch,
                **{key: _channels_last(batch[key]) for key in ("lr", "lr_up", "ref", "ref_down_up")},
            }
        return super().forward(batch)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        generator_opt = optimizers[0]
        hr = batch["hr"]
        out = self(batch)
        terms: dict[str, Tensor] = {"reconstruction": self.loss_terms["reconstruction"](out.sr, hr)}
        logs: dict[str, Tensor] = {}
        if not self.in_warmup:
            if self.discriminator is not None:
                critic_logs = self._critic_steps(
                    optimizers[1], real=hr, fake=out.sr.detach(), batch_idx=batch_idx
                )
                if critic_logs is None:
                    return None  # a non-finite critic step was skipped: skip the whole batch
                logs.update(critic_logs)
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
        generator_params = [p for group in generator_opt.param_groups for p in group["params"]]
        if not self._finite_or_skip(batch_idx, "loss", terms, generator_params, "generator gradient"):
            generator_opt.zero_grad(set_to_none=True)
            return None
        if self.optim_settings.gradient_clip_val is not None:
            self.clip_gradients(
                cast(Any, generator_opt),
                gradient_clip_val=self.optim_settings.gradient_clip_val,
                gradient_clip_algorithm="norm",
            )
        generator_opt.step()
        self._lte_copy_stale = True

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

    def _critic_steps(
        self, critic_opt: Any, real: Tensor, fake: Tensor, batch_idx: int
    ) -> dict[str, Tensor] | None:
        """``gan_k`` WGAN-GP critic updates on (real, fake); the last step's statistics, or None when a
        non-finite step was skipped (``optim.max_nonfinite_skips``)."""
        assert self.discriminator is not None
        stats: dict[str, Tensor] = {}
        critic_params = list(self.discriminator.parameters())
        for _ in range(self.optim_settings.gan_k):
            critic_loss, step_stats = self._adversarial.critic_loss(self.discriminator, real, fake)
            critic_opt.zero_grad(set_to_none=True)
            self.manual_backward(critic_loss)
            if not self._finite_or_skip(
                batch_idx, "critic loss", {"critic": critic_loss}, critic_params, "critic gradient"
            ):
                critic_opt.zero_grad(set_to_none=True)
                return None
            critic_opt.step()
            stats = {
                "critic/loss": critic_loss.detach(),
                **{f"critic/{k}": v.detach() for k, v in step_stats.items()},
            }
        return stats

    def _finite_or_skip(
        self,
        batch_idx: int,
        kind: str,
        terms: dict[str, Tensor],
        params: Sequence[Tensor],
        gradient_name: str,
    ) -> bool:
        """True when every term and the gradient norm are finite on every rank. Otherwise skips the batch
        (False, with a warning) while ``optim.max_nonfinite_skips`` allows, else raises NonFiniteError."""
        grads = [p.grad for p in params if p.grad is not None]
        gradient_norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
        values = {
            **{name: value.detach() for name, value in terms.items()},
            gradient_name: gradient_norm.detach(),
        }
        local_bad = not bool(torch.stack([v.float().isfinite().all() for v in values.values()]).all())
        if not self.trainer.strategy.reduce_boolean_decision(local_bad, all=False):
            return True
        bad = [f"{name}={float(v):.4g}" for name, v in values.items() if not bool(v.float().isfinite().all())]
        where = (
            f"epoch {self.current_epoch}, batch {batch_idx} of the epoch "
            f"(training batch {self.trainer.fit_loop.epoch_loop.total_batch_idx + 1} of the run)"
        )
        problem = f"non-finite {kind} or gradient at {where}: {', '.join(bad) or 'on another rank'}"
        limit = self.optim_settings.max_nonfinite_skips
        if self.nonfinite_skips < limit:
            self.nonfinite_skips += 1
            rank_zero_warn(
                f"{problem}; batch skipped ({self.nonfinite_skips} of optim.max_nonfinite_skips={limit})"
            )
            return False
        raise NonFiniteError(
            f"{problem}; the run stops, its last checkpoint intact (optim.max_nonfinite_skips={limit}; "
            "a larger value skips that many such batches)"
        )

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

    def on_train_start(self) -> None:
        # A run resumed from a checkpoint written after an epoch's last batch but before this module's
        # on_train_epoch_end (the mid-epoch checkpoint of that batch, or ModelCheckpoint's saves at
        # validation end) never gets that hook: Lightning counts the epoch as finished. Catch up.
        self._step_lr_schedules_to(self.current_epoch)

    def on_train_epoch_end(self) -> None:
        self._step_lr_schedules_to(self.current_epoch + 1)

    def _step_lr_schedules_to(self, epoch: int) -> None:
        """Step the schedulers once per finished epoch after the warm-up (as the official StepLR),
        counting the epochs before ``epoch``; idempotent."""
        finished = max(0, epoch - self.optim_settings.warmup_epochs)
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            while scheduler is not None and scheduler.last_epoch < finished:
                scheduler.step()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        strip_frozen_weights(checkpoint)
        checkpoint["nonfinite_skips"] = self.nonfinite_skips

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore_frozen_weights(checkpoint, self.state_dict())
        self.nonfinite_skips = int(checkpoint.get("nonfinite_skips", 0))
        self._lte_copy_stale = True


def _build(config: dict[str, Any] | None, key: str) -> Any:
    """``instantiate(config)``; a constructor's refusal becomes a ConfigError naming the config key."""
    try:
        return instantiate(config)
    except InstantiationException as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        raise ConfigError(f"{key}: {cause}") from exc


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


def _channels_last(images: Tensor | Sequence[Tensor]) -> Tensor | list[Tensor]:
    """An image batch, or a list of them (one per reference), in channels-last memory format."""
    if isinstance(images, Tensor):
        return images.contiguous(memory_format=torch.channels_last)
    return [image.contiguous(memory_format=torch.channels_last) for image in images]
