"""TTSRSystem: the training policy. Evaluation is inherited from :class:`EvaluationModule`.

What it does, per training batch (manual optimisation, as the official ``trainer.py`` + ``loss/loss.py``):

1. generator forward: ``sr, S, T = G(lr, lr_up, ref, ref_down_up)``;
2. when the term that needs the critic (TTSR: the adversarial one) is active: ``optim.gan_k`` WGAN-GP
   critic steps on ``(sr.detach(), hr)``, the one special case;
3. every active loss term of ``loss.terms`` (weight > 0; ``after_warmup`` terms only after
   ``optim.warmup_epochs`` epochs, the official ``num_init_epochs``), each called the same way,
   ``term(LossContext)`` (:mod:`ttsr_lightning.losses.context`), logged as ``train/loss_<name>`` and
   summed as ``weight * value`` in config order (TTSR: L1, then adversarial, perceptual and transferal
   perceptual, the latter through a frozen copy of the current LTE);
4. one step of the generator's optimiser (``optim.generator.optimizer``, the paper's Adam by default): one
   parameter group per entry of the generator's parameter groups, each with the optimiser's options and
   its own from ``optim.generator.param_groups.<group>`` (TTSR: main network ``generator``, ``lte`` at a
   tenth of its learning rate).

The generator is any module of the interface in :mod:`ttsr_lightning.models.interface`; a term that
needs the texture extractor (the transferal perceptual term) needs its ``texture_extractor``.

A loss term is on iff its weight (``loss.terms.<name>.weight``) is > 0; terms that are off are not built,
nor what only they need (no VGG19, no critic, no LTE copy for TTSR-rec). Every optimiser step checks its
loss terms and gradients on the device (:mod:`ttsr_lightning.nonfinite`): after a NaN or infinity, that
step and the rest of the batch are skipped on the device (all ranks together), so no parameter, optimiser
state or checkpoint ever sees it, and the step never waits for the host. The host reads the checks two
batches later (or before the next checkpoint, or at the epoch's end): a bad batch then stops the run with
:class:`NonFiniteError` naming the term, the epoch and the batch; ``optim.max_nonfinite_skips`` lets a
run skip up to that many such batches with a warning each. Nothing else in a training step reads a device
value on the host: the losses are logged as device tensors (the loggers read them every
``trainer.log_every_n_steps`` steps) and the learning rates once per epoch.

Hyper-parameters are plain values (dicts with ``_target_``), so a checkpoint reloads under torch's
weights-only loading and rebuilds every module by itself. Config validation lives in
:mod:`ttsr_lightning.settings`, checkpoint contents in :mod:`ttsr_lightning.checkpoints.run_checkpoint`,
the batch counter and RNG states in the ``ResumeCheckpoint`` callback.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from ttsr_lightning.builders import instantiate_node
from ttsr_lightning.checkpoints.run_checkpoint import restore_frozen_weights, strip_frozen_weights
from ttsr_lightning.errors import ConfigError, NonFiniteError
from ttsr_lightning.evaluation_module import EvaluationModule
from ttsr_lightning.losses import LossContext, LossTerm, WGANGPLoss
from ttsr_lightning.losses.context import CRITIC, NEEDS, TEXTURE_EXTRACTOR, has_frozen_weights, needs_of
from ttsr_lightning.models import Discriminator, GeneratorOutput, TTSRGenerator
from ttsr_lightning.models.interface import parameter_groups, texture_extractor
from ttsr_lightning.nonfinite import LAG_BATCHES, NonFiniteGuard, step_where
from ttsr_lightning.protocols import protocols_from_config
from ttsr_lightning.settings import LossTermSettings, OptimSettings, build_optimizer, loss_terms

# torch.compile's modes (system.compile_mode); those that record CUDA graphs on a GPU
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


class TTSRSystem(EvaluationModule):
    """TTSR training (validation and test as :class:`EvaluationModule`).

    Args:
        generator: config of the generator (``_target_`` + constructor args), e.g. ``conf/model/ttsr.yaml``:
            TTSR or any module of :mod:`ttsr_lightning.models.interface`.
        discriminator: config of the WGAN-GP critic; built only when an enabled term needs the critic.
        losses: the ``loss`` group: ``terms``, name -> ``_target_`` config with ``weight`` and
            ``after_warmup`` (a term is on iff its weight is > 0; see
            :func:`ttsr_lightning.settings.loss_terms`).
        optim: the ``optim`` group (see :class:`ttsr_lightning.settings.OptimSettings`).
        protocols: the ``protocol`` group ({name: fields}, conf/protocol/): how validation and test
            measure; the first is the primary (validation, the monitored ``val/psnr``). Default: the
            official TTSR evaluation.
        lazy_lte_copy_sync: copy the LTE into its frozen twin only when the LTE changed since the last copy.
        lpips: LPIPS in validation and test beside PSNR/SSIM: ``"auto"``, ``True``, ``False`` or the
            AlexNet weights file (see :class:`EvaluationModule`).
        channels_last: keep weights and image batches in channels-last memory format (faster
            convolutions on tensor cores; same results up to rounding).
        compile: ``torch.compile`` what a training step runs, with static shapes: the generator,
            every loss term (the frozen LTE copy and VGG included) and the critic's objective, its
            gradient penalty's double backward included (Dynamo traces ``torch.autograd.grad``).
            Validation, test and checkpoints use the modules themselves (eager; keys unchanged), so
            evaluation images of any size compile nothing. The random mixing weights are drawn eagerly:
            compiled and eager steps draw the same numbers.
        compile_mode: ``torch.compile``'s mode with ``compile``: ``default``, ``reduce-overhead``
            (CUDA graphs on a GPU: each compiled graph replays without per-kernel launches),
            ``max-autotune`` or ``max-autotune-no-cudagraphs``.
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
        compile_mode: str = "default",
    ) -> None:
        if compile_mode not in COMPILE_MODES:
            raise ConfigError(
                f"system.compile_mode must be one of {list(COMPILE_MODES)}, got {compile_mode!r}"
            )
        optim_settings = OptimSettings.from_dict(dict(optim))
        term_settings = loss_terms(losses)
        built_generator = instantiate_node("model.generator", generator)
        if not isinstance(built_generator, nn.Module):
            raise ConfigError(
                "model.generator: expected the config of a generator module (an nn.Module with forward(lr, "
                f"lr_up, ref, ref_down_up) -> GeneratorOutput), got {type(built_generator).__name__}"
            )
        super().__init__(
            built_generator, protocols_from_config(protocols) if protocols else None, lpips=lpips
        )
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.optim_settings = optim_settings
        # the enabled terms (weight > 0), in config order: their weights and phases; modules below
        self.term_settings: dict[str, LossTermSettings] = {
            name: term for name, term in term_settings.items() if term.weight > 0
        }
        self.loss_terms = nn.ModuleDict(
            {
                name: instantiate_node(f"loss.terms.{name}", term.module)
                for name, term in self.term_settings.items()
            }
        )
        needs = self._loss_needs()
        # the term whose critic the WGAN-GP critic steps train (TTSR: adversarial)
        critic_terms = [name for name, module in self.loss_terms.items() if CRITIC in needs_of(module)]
        if len(critic_terms) > 1:
            raise ConfigError(f"loss.terms: at most one term may need the critic, got {critic_terms}")
        self.critic_term: str | None = critic_terms[0] if critic_terms else None
        if self.critic_term is not None and discriminator is None:
            raise ConfigError(
                f"model.discriminator must be configured when loss.terms.{self.critic_term}.weight > 0"
            )
        self.discriminator: Discriminator | None = (
            instantiate_node("model.discriminator", discriminator) if self.critic_term is not None else None
        )
        # Frozen twin of the texture extractor (TTSR's LTE) for the terms that need it, the transferal
        # perceptual loss (the official LTE_copy).
        self.lte_copy: nn.Module | None = None
        if needs.get(TEXTURE_EXTRACTOR):
            extractor = texture_extractor(self.generator)
            if extractor is None:
                how = (
                    "(model.generator.use_hard_attention=false)"
                    if isinstance(self.generator, TTSRGenerator)
                    else f"({type(self.generator).__name__} has no texture_extractor)"
                )
                raise ConfigError(
                    f"loss.terms.{needs[TEXTURE_EXTRACTOR][0]}.weight must be 0 for a generator without "
                    "texture transfer " + how
                )
            self.lte_copy = copy.deepcopy(extractor).requires_grad_(False).eval()
        self._lte_copy_stale = True
        self.lazy_lte_copy_sync = lazy_lte_copy_sync
        self.channels_last = channels_last
        self.compile_modules = compile
        self.compile_mode = compile_mode
        # the training step's callables, by name, where compiled (configure_model); else the modules
        self._compiled: dict[str, Callable[..., Any]] = {}
        # batches skipped for a non-finite loss or gradient (optim.max_nonfinite_skips); checkpointed
        self.nonfinite_skips = 0
        # training batches run so far (the current one included, from its training step on); checkpointed
        self.batches_run = 0
        self._nonfinite = NonFiniteGuard()
        # (epoch, its "train/warmup" and learning rates on the device): logged every step, read never
        self._epoch_scalars: tuple[int, Tensor] | None = None

    # ------------------------------------------------------------------ set-up
    @property
    def frozen_prefixes(self) -> tuple[str, ...]:
        """The evaluation's, the texture extractor's frozen twin (copied from the generator) and every
        loss term declaring fixed weights (:func:`~ttsr_lightning.losses.context.has_frozen_weights`)."""
        terms = tuple(
            f"loss_terms.{name}." for name, term in self.loss_terms.items() if has_frozen_weights(term)
        )
        return (*super().frozen_prefixes, "lte_copy.", *terms)

    def configure_model(self) -> None:
        """Speed options, applied once the module is on its device."""
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        if self.compile_modules and not self._compiled:
            self._compiled = self._compile_training_step()

    def _compile_training_step(self) -> dict[str, Callable[..., Any]]:
        """The compiled callables of a training step (``system.compile``), by name; modules unchanged."""
        mode = None if self.compile_mode == "default" else self.compile_mode
        compiled: dict[str, Callable[..., Any]] = {
            "generator": torch.compile(self.generator, dynamic=False, mode=mode)
        }
        for name, module in self.loss_terms.items():
            compiled[f"loss/{name}"] = torch.compile(cast(LossTerm, module).term, dynamic=False, mode=mode)
        if self.discriminator is not None:
            critic_objective = torch.compile(self._adversarial.critic_objective, dynamic=False, mode=mode)

            def critic_with_penalty(*args: Any) -> Any:
                # Dynamo traces the penalty's torch.autograd.grad into the graph only when asked (read
                # while tracing); otherwise the graph breaks there and the compiled critic cannot be
                # differentiated twice.
                with torch._dynamo.config.patch(trace_autograd_ops=True):
                    return critic_objective(*args)

            compiled["critic_objective"] = critic_with_penalty
        return compiled

    def _step_function(self, name: str, eager: Callable[..., Any]) -> Callable[..., Any]:
        """The training step's callable ``name``: compiled with ``system.compile``, else ``eager``."""
        return self._compiled.get(name, eager)

    def configure_optimizers(self) -> Any:
        s = self.optim_settings
        networks = {"generator": parameter_groups(self.generator)}
        if self.discriminator is not None:
            networks["discriminator"] = {"": list(self.discriminator.parameters())}
        configs: list[dict[str, Any]] = []
        for network, groups in networks.items():
            config = getattr(s, network)
            optimizer, scheduler = build_optimizer(
                f"optim.{network}", config, groups, s.extra_arguments(config, self.device.type)
            )
            configs.append({"optimizer": optimizer, **({"lr_scheduler": scheduler} if scheduler else {})})
        return configs

    # ------------------------------------------------------------------ training
    def _loss_needs(self) -> dict[str, list[str]]:
        """Each optional context piece (losses.context.NEEDS) -> the enabled terms that need it."""
        needs: dict[str, list[str]] = {}
        for name, module in self.loss_terms.items():
            for need in needs_of(module):
                if need not in NEEDS:
                    raise ConfigError(
                        f"loss.terms.{name}: {type(module).__name__}.needs names {need!r}; expected some "
                        f"of {list(NEEDS)}"
                    )
                needs.setdefault(need, []).append(name)
        return needs

    @property
    def _adversarial(self) -> WGANGPLoss:
        """The term whose critic the critic steps train."""
        assert self.critic_term is not None
        return cast(WGANGPLoss, self.loss_terms[self.critic_term])

    def _needed(self, need: str, active: list[str]) -> bool:
        """Whether one of the ``active`` terms needs the context piece ``need``."""
        return any(need in needs_of(self.loss_terms[name]) for name in active)

    def _active(self, name: str) -> bool:
        """Whether the enabled term ``name`` is in its phase this epoch."""
        return not (self.term_settings[name].after_warmup and self.in_warmup)

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
        if self.training:  # the training step's generator: compiled with system.compile
            generator = self._step_function("generator", self.generator)
            return generator(batch["lr"], batch["lr_up"], batch["ref"], batch["ref_down_up"])
        return super().forward(batch)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self.batches_run += 1
        self._settle_nonfinite(self.batches_run - LAG_BATCHES)
        if self._compiled and self.compile_mode in CUDA_GRAPH_MODES:
            torch.compiler.cudagraph_mark_step_begin()  # last step's graph outputs may be overwritten
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        generator_opt = optimizers[0]
        hr = batch["hr"]
        out = self(batch)
        active = [name for name in self.loss_terms if self._active(name)]
        logs: dict[str, Tensor] = {}
        if self.discriminator is not None and self.critic_term in active:
            logs.update(self._critic_steps(optimizers[1], real=hr, fake=out.sr.detach()))
        context = LossContext(
            sr=out.sr,
            hr=hr,
            output=out,
            texture_extractor=self._synced_lte_copy() if self._needed(TEXTURE_EXTRACTOR, active) else None,
            critic=self.discriminator,
        )
        terms: dict[str, Tensor] = {}
        with _frozen(self.discriminator) if self.discriminator is not None else contextlib.nullcontext():
            for name in active:
                loss_term = cast(LossTerm, self.loss_terms[name]).term
                terms[name] = self._step_function(f"loss/{name}", loss_term)(context)
        total = sum(self.term_settings[name].weight * value for name, value in terms.items())
        assert isinstance(total, Tensor)

        generator_opt.zero_grad(set_to_none=True)
        self.manual_backward(total)
        keep = self._nonfinite.check("loss", terms, "generator gradient", _gradients(generator_opt))
        if self.optim_settings.gradient_clip_val is not None:
            self.clip_gradients(
                cast(Any, generator_opt),
                gradient_clip_val=self.optim_settings.gradient_clip_val,
                gradient_clip_algorithm="norm",
            )
        step_where(generator_opt, keep)
        self._lte_copy_stale = True
        self._nonfinite.end_batch(self.current_epoch, batch_idx, self.batches_run)

        # device tensors only (a progress-bar value would be read on the host every step)
        batch_size = hr.shape[0]
        self.log("train/loss", total.detach(), batch_size=batch_size)
        for term, value in terms.items():
            self.log(f"train/loss_{term}", value.detach(), batch_size=batch_size)
        for key, value in logs.items():
            self.log(key, value, batch_size=batch_size)
        scalars = self._epoch_scalars_on_device(generator_opt)
        self.log("train/warmup", scalars[0], batch_size=batch_size)
        for number, group in enumerate(generator_opt.param_groups, start=1):
            self.log(f"lr/{group['name']}", scalars[number], batch_size=batch_size)
        return total.detach()

    def _epoch_scalars_on_device(self, generator_opt: Any) -> Tensor:
        """This epoch's warm-up flag and learning rates (they change only between epochs) on the device:
        copied there once per epoch, logged every step without a host read."""
        if self._epoch_scalars is None or self._epoch_scalars[0] != self.current_epoch:
            rates = [float(self.in_warmup), *(group["lr"] for group in generator_opt.param_groups)]
            self._epoch_scalars = (self.current_epoch, torch.tensor(rates, device=self.device))
        return self._epoch_scalars[1]

    def _critic_steps(self, critic_opt: Any, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """``gan_k`` WGAN-GP critic updates on (real, fake) (skipped on the device after a non-finite
        check); the last step's statistics."""
        assert self.discriminator is not None
        stats: dict[str, Tensor] = {}
        objective = self._step_function("critic_objective", self._adversarial.critic_objective)
        for _ in range(self.optim_settings.gan_k):
            eps = self._adversarial.mixing_weights(real)
            critic_loss, step_stats = objective(self.discriminator, real, fake, eps)
            critic_opt.zero_grad(set_to_none=True)
            self.manual_backward(critic_loss)
            keep = self._nonfinite.check(
                "critic loss", {"critic": critic_loss}, "critic gradient", _gradients(critic_opt)
            )
            step_where(critic_opt, keep)
            stats = {
                "critic/loss": critic_loss.detach(),
                **{f"critic/{k}": v.detach() for k, v in step_stats.items()},
            }
        return stats

    def _settle_nonfinite(self, up_to_run_batch: int | None = None) -> None:
        """Reads the non-finite checks of the batches up to ``up_to_run_batch`` (None: all, waiting for
        the device): a bad batch was skipped; counts it while ``optim.max_nonfinite_skips`` allows (with
        a warning), else raises NonFiniteError. Every rank reads the same batches at the same point."""
        for finding in self._nonfinite.settle(up_to_run_batch):
            bad = ", ".join(f"{name}={value:.4g}" for name, value in finding.bad) or "on another rank"
            where = (
                f"epoch {finding.epoch}, batch {finding.batch_idx} of the epoch "
                f"(training batch {finding.run_batch} of the run)"
            )
            problem = f"non-finite {finding.kind} or gradient at {where}: {bad}"
            limit = self.optim_settings.max_nonfinite_skips
            if self.nonfinite_skips < limit:
                self.nonfinite_skips += 1
                rank_zero_warn(
                    f"{problem}; batch skipped ({self.nonfinite_skips} of optim.max_nonfinite_skips={limit})"
                )
                continue
            raise NonFiniteError(
                f"{problem}; the run stops, its last checkpoint intact (optim.max_nonfinite_skips={limit}; "
                "a larger value skips that many such batches)"
            )

    def _synced_lte_copy(self) -> nn.Module:
        """The frozen texture-extractor copy, first made equal to the current extractor when it changed
        since the last copy (or always, without ``system.lazy_lte_copy_sync``)."""
        extractor = texture_extractor(self.generator)
        assert self.lte_copy is not None and extractor is not None
        if self._lte_copy_stale or not self.lazy_lte_copy_sync:
            # copy_ keeps the copy's tensors (and their device) in place
            with torch.no_grad():
                for target, source in zip(
                    self.lte_copy.state_dict().values(), extractor.state_dict().values(), strict=True
                ):
                    target.copy_(source)
            self._lte_copy_stale = False
        return self.lte_copy

    def on_train_start(self) -> None:
        self._nonfinite.clear()
        self._epoch_scalars = None
        # A run resumed from a checkpoint written after an epoch's last batch but before this module's
        # on_train_epoch_end (the mid-epoch checkpoint of that batch, or ModelCheckpoint's saves at
        # validation end) never gets that hook: Lightning counts the epoch as finished. Catch up.
        self._step_lr_schedules_to(self.current_epoch)

    def on_train_epoch_end(self) -> None:
        self._settle_nonfinite()
        self._step_lr_schedules_to(self.current_epoch + 1)

    def on_train_end(self) -> None:
        self._settle_nonfinite()

    def _step_lr_schedules_to(self, epoch: int) -> None:
        """Step the schedulers once per finished epoch after the warm-up (as the official StepLR),
        counting the epochs before ``epoch``; idempotent."""
        finished = max(0, epoch - self.optim_settings.warmup_epochs)
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            while scheduler is not None and scheduler.last_epoch < finished:
                scheduler.step()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._settle_nonfinite()  # a batch that stops the run stops it before this checkpoint
        strip_frozen_weights(checkpoint, self.frozen_prefixes)
        checkpoint["nonfinite_skips"] = self.nonfinite_skips
        checkpoint["batches_run"] = self.batches_run

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore_frozen_weights(checkpoint, self)
        self.nonfinite_skips = int(checkpoint.get("nonfinite_skips", 0))
        self.batches_run = int(checkpoint.get("batches_run", 0))
        self._lte_copy_stale = True


def _gradients(optimizer: Any) -> list[Tensor]:
    return [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


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
