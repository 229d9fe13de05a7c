"""TTSRSystem: which weights one manual-optimisation step changes in each phase, and what it logs."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader

from helpers.config import TINY_GENERATOR, paper_losses
from helpers.host_reads import HostReads
from helpers.lpips_reference import seeded_alexnet_state_dict
from ttsr_lightning import lpips_setting as lpips_module
from ttsr_lightning.errors import NonFiniteError
from ttsr_lightning.pretrained import ALEXNET, sha256_of_file
from ttsr_lightning.system import TTSRSystem

GENERATOR = {"_target_": "ttsr_lightning.models.TTSRGenerator", **TINY_GENERATOR}
DISCRIMINATOR = {"_target_": "ttsr_lightning.models.Discriminator", "in_size": 32}
# the paper's objective as the package composes it (conf/loss/default.yaml), random VGG19 weights
LOSSES = paper_losses()

LOSSES_REC = {"terms": {"reconstruction": LOSSES["terms"]["reconstruction"]}}


def with_weights(**weights: float) -> dict[str, Any]:
    """LOSSES with the given terms' weights (the others unchanged)."""
    terms = LOSSES["terms"]
    return {
        "terms": {name: {**term, "weight": weights.get(name, term["weight"])} for name, term in terms.items()}
    }


def make_system(**optim: Any) -> TTSRSystem:
    torch.manual_seed(0)
    return TTSRSystem(GENERATOR, DISCRIMINATOR, LOSSES, {"warmup_epochs": 1, "gan_k": 2, **optim})


def batches(count: int, nan_batches: tuple[int, ...] = ()) -> DataLoader:
    """``count`` random batches of one; those in ``nan_batches`` have a NaN in their HR image."""
    generator = torch.Generator().manual_seed(1)

    def image(size: int) -> torch.Tensor:
        return torch.rand(3, size, size, generator=generator) * 2 - 1

    items = [
        {"lr": image(8), "lr_up": image(32), "hr": image(32), "ref": image(32), "ref_down_up": image(32)}
        for _ in range(count)
    ]
    for index in nan_batches:
        items[index]["hr"][0, 5, 7] = float("nan")
    return DataLoader(items, batch_size=1)


class Snapshots(Callback):
    """Copies of the generator's main net, LTE and the critic at the end of every epoch."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, dict[str, torch.Tensor]]] = []
        self.logged: list[set[str]] = []

    @staticmethod
    def take(module: TTSRSystem) -> dict[str, dict[str, torch.Tensor]]:
        return {
            "main_net": copy.deepcopy(module.generator.main_net.state_dict()),
            "lte": copy.deepcopy(module.generator.lte.state_dict()),
            "critic": copy.deepcopy(module.discriminator.state_dict()),
        }

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        assert isinstance(pl_module, TTSRSystem)
        self.epochs.append(self.take(pl_module))
        self.logged.append(set(trainer.callback_metrics))


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(before[key], after[key]) for key in before)


def fit(
    system: TTSRSystem,
    epochs: int,
    batch_count: int = 1,
    nan_batches: tuple[int, ...] = (),
    callbacks: list[Callback] | None = None,
) -> Snapshots:
    snapshots = Snapshots()
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[snapshots, *(callbacks or [])],
    )
    trainer.fit(system, train_dataloaders=batches(batch_count, nan_batches))
    return snapshots


def test_warmup_step_trains_generator_and_lte_but_not_the_critic() -> None:
    system = make_system()
    initial = Snapshots.take(system)
    snapshots = fit(system, epochs=1)
    after = snapshots.epochs[0]
    assert changed(initial["main_net"], after["main_net"])
    assert changed(initial["lte"], after["lte"])  # the LTE learns through S and T
    assert not changed(initial["critic"], after["critic"])
    logged = snapshots.logged[0]
    assert "train/loss_reconstruction" in logged
    assert not any(
        key.startswith(("critic/", "train/loss_adversarial", "train/loss_perceptual")) for key in logged
    )
    # one optimiser step per batch in the warm-up (Lightning's global_step counts optimiser steps)
    assert system.trainer.global_step == 1


def test_after_warmup_every_loss_is_on_and_the_critic_steps_gan_k_times() -> None:
    system = make_system()
    snapshots = fit(system, epochs=2)
    warm, full = snapshots.epochs
    assert changed(warm["critic"], full["critic"])
    assert changed(warm["main_net"], full["main_net"])
    logged = snapshots.logged[1]
    for key in (
        "train/loss_adversarial",
        "train/loss_perceptual",
        "train/loss_transferal_perceptual",
        "critic/gradient_penalty",
        "critic/real_score",
        "critic/fake_score",
    ):
        assert key in logged, key
    assert all(torch.isfinite(system.trainer.callback_metrics[key]) for key in logged)
    # warm-up batch: 1 optimiser step; full batch: 1 generator + gan_k=2 critic steps
    assert system.trainer.global_step == 1 + 3


def test_frozen_lte_copy_follows_the_lte_only_when_it_changed() -> None:
    system = make_system()
    snapshots = fit(system, epochs=2)
    lte_copy, lte = system.lte_copy, system.generator.lte
    assert lte_copy is not None
    assert not any(p.requires_grad for p in lte_copy.parameters())
    # synced before the last batch's TPL term (the LTE as the warm-up epoch left it), then the LTE stepped
    assert not changed(snapshots.epochs[0]["lte"], lte_copy.state_dict())
    assert changed(lte_copy.state_dict(), lte.state_dict())
    # the LTE changed since: the next use copies it
    assert system._synced_lte_copy() is lte_copy and not changed(lte.state_dict(), lte_copy.state_dict())
    # the LTE unchanged since: the next use copies nothing (a mark left in the copy stays)
    with torch.no_grad():
        next(lte_copy.parameters()).add_(1.0)
    system._synced_lte_copy()
    assert changed(lte.state_dict(), lte_copy.state_dict())


def test_learning_rates_follow_the_config_per_parameter_group() -> None:
    system = make_system(
        generator={"optimizer": {"lr": 2e-4}, "param_groups": {"lte": {"lr": 3e-6}}},
        discriminator={"optimizer": {"lr": 5e-5, "betas": [0.0, 0.9]}},
    )
    generator_config, critic_config = system.configure_optimizers()
    groups = {g["name"]: g for g in generator_config["optimizer"].param_groups}
    assert groups["generator"]["lr"] == 2e-4 and groups["lte"]["lr"] == 3e-6
    assert groups["generator"]["betas"] == (0.9, 0.999)
    critic = critic_config["optimizer"].param_groups[0]
    assert critic["lr"] == 5e-5 and critic["betas"] == (0.0, 0.9)
    lte_params = {id(p) for p in system.generator.lte.parameters()}
    assert {id(p) for p in groups["lte"]["params"]} == lte_params
    assert not lte_params & {id(p) for p in groups["generator"]["params"]}


def test_reconstruction_only_builds_no_critic_and_no_vgg() -> None:
    # a term is on or off by its weight alone: the other terms stay configured
    losses = with_weights(adversarial=0.0, perceptual=0.0, transferal_perceptual=0.0)
    system = TTSRSystem(GENERATOR, DISCRIMINATOR, losses, {"warmup_epochs": 0})
    assert system.discriminator is None and system.lte_copy is None
    assert list(system.loss_terms) == ["reconstruction"]
    assert len(system.configure_optimizers()) == 1


def test_tpl_needs_texture_transfer() -> None:
    base = {
        **GENERATOR,
        "use_hard_attention": False,
        "use_soft_attention": False,
        "learnable_extractor": False,
    }
    with pytest.raises(ValueError, match="use_hard_attention=false"):
        TTSRSystem(base, DISCRIMINATOR, LOSSES, {})


def test_checkpoints_leave_out_the_frozen_vgg_and_lte_copy_and_still_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    system = make_system()
    trainer = Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(system, train_dataloaders=batches(1))
    path = tmp_path / "system.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert not any(key.startswith(("loss_terms.perceptual.", "lte_copy.")) for key in saved)
    assert any(key.startswith("generator.lte.") for key in saved)
    restored = TTSRSystem.load_from_checkpoint(path, map_location="cpu")
    for key, value in system.generator.state_dict().items():
        assert torch.equal(value, restored.generator.state_dict()[key])


class ReadsPerBatch(Callback):
    """Host reads from the start of each training batch to the start of the next (or the end)."""

    def __init__(self, reads: HostReads) -> None:
        self.reads = reads
        self.marks: list[int] = []

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, idx: int
    ) -> None:
        self.marks.append(len(self.reads.reads))

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.marks.append(len(self.reads.reads))

    def batch(self, number: int) -> dict[str, int]:
        return dict(self.reads.since(self.marks[number]) - self.reads.since(self.marks[number + 1]))


def test_a_training_step_reads_nothing_on_the_host_but_the_checks_of_two_batches_back() -> None:
    """Every host read the whole loop makes per batch, counted (see helpers.host_reads): none but the
    non-finite checks of the batch two back (on a GPU: from page-locked memory, finished long ago).
    Not counted: the optimisers' step counts (CPU tensors here; on the device on CUDA, where Adam is
    capturable) and the loggers (none here; they read every trainer.log_every_n_steps steps)."""
    with HostReads() as probe:  # the counter sees what it must
        torch.ones(2).sum().item(), bool(torch.ones(())), torch.tensor([1.0]), torch.ones(2).tolist()
    assert len(probe.reads) == 4, probe.reads

    system = make_system(warmup_epochs=1, gan_k=2)
    reads = HostReads(ignore=lambda filename: "/torch/optim/" in filename)
    per_batch = ReadsPerBatch(reads)
    with reads:
        fit(system, epochs=2, batch_count=4, callbacks=[per_batch])
    lagged = "Tensor.tolist at src/ttsr_lightning/nonfinite.py"
    # batches 0-3: warm-up epoch, 4-7: all losses. The first batch of each phase creates optimiser
    # state and logged metrics; the last one ends the epoch (its checks are read then, and the next
    # epoch's learning rates go to the device). Batches 2 and 6 read the checks of batches 0 and 4.
    expected = {1: {}, 2: {lagged: 1}, 5: {}, 6: {lagged: 1}}
    for number, reads_expected in expected.items():
        found = {key.rsplit(":", 1)[0]: count for key, count in per_batch.batch(number).items()}
        assert found == reads_expected, (number, per_batch.batch(number))


def test_a_nonfinite_loss_stops_the_run_naming_term_epoch_and_batch_before_any_step() -> None:
    system = make_system(warmup_epochs=2)
    before = copy.deepcopy(system.generator.state_dict())
    message = (
        r"non-finite loss or gradient at epoch 0, batch 1 of the epoch \(training batch 2 of the run\): "
        r"reconstruction=nan; the run stops, its last checkpoint intact"
    )
    with pytest.raises(NonFiniteError, match=message):
        fit(system, epochs=1, batch_count=3, nan_batches=(1,))
    # the first (good) batch stepped; the bad one did not
    after = system.generator.state_dict()
    assert changed(before, after)
    assert all(torch.isfinite(value).all() for value in after.values())


def test_a_nonfinite_critic_loss_stops_the_run_before_the_critic_steps() -> None:
    system = make_system(warmup_epochs=0)
    critic_before = copy.deepcopy(system.discriminator.state_dict())
    with pytest.raises(
        NonFiniteError, match=r"non-finite critic loss or gradient at epoch 0, batch 0 .*critic=nan"
    ):
        fit(system, epochs=1, batch_count=1, nan_batches=(0,))
    assert not changed(critic_before, system.discriminator.state_dict())


def test_an_opt_in_policy_skips_up_to_n_bad_batches_with_a_warning_each() -> None:
    system = make_system(warmup_epochs=2, max_nonfinite_skips=2)
    with pytest.warns(UserWarning, match=r"batch skipped \(1 of optim.max_nonfinite_skips=2\)"):
        snapshots = fit(system, epochs=1, batch_count=3, nan_batches=(0,))
    assert system.nonfinite_skips == 1
    assert "train/loss" in snapshots.logged[0]  # the good batches trained and logged
    system = make_system(warmup_epochs=2, max_nonfinite_skips=1)
    with (
        pytest.warns(UserWarning, match="batch skipped"),
        pytest.raises(NonFiniteError, match="batch 2 of the epoch"),
    ):
        fit(system, epochs=1, batch_count=3, nan_batches=(0, 2))


def test_checkpoints_leave_out_the_lpips_network_and_still_load(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    alexnet = tmp_path / "alexnet-seeded.pth"
    torch.save(seeded_alexnet_state_dict(), alexnet)
    # the seeded stand-in taken for torchvision's file
    monkeypatch.setattr(lpips_module, "ALEXNET", dataclasses.replace(ALEXNET, sha256=sha256_of_file(alexnet)))
    torch.manual_seed(0)
    system = TTSRSystem(GENERATOR, None, LOSSES_REC, {}, lpips=str(alexnet))
    assert system.lpips is not None and system.lpips_description.startswith("AlexNet v0.1")
    trainer = Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(system, train_dataloaders=batches(1))
    assert not any(p.requires_grad for p in system.lpips.parameters())
    path = tmp_path / "system.ckpt"
    trainer.save_checkpoint(path)
    assert not any(key.startswith("lpips.") for key in torch.load(path, weights_only=True)["state_dict"])
    restored = TTSRSystem.load_from_checkpoint(path, map_location="cpu")
    assert restored.lpips is not None
    for key, value in system.lpips.state_dict().items():
        assert torch.equal(value, restored.lpips.state_dict()[key])


class GraphsPerBatch(Callback):
    """Dynamo's count of compiled graphs at the start of each training batch and at the end."""

    def __init__(self) -> None:
        self.graphs: list[int] = []

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, idx: int
    ) -> None:
        self.graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])


@pytest.fixture
def fresh_dynamo() -> Any:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield
    torch._dynamo.reset()


def test_a_compiled_step_compiles_in_the_first_batch_of_each_phase_only(
    monkeypatch: pytest.MonkeyPatch, fresh_dynamo: Any
) -> None:
    """system.compile: the warm-up's first batch compiles the generator and the reconstruction loss,
    the adversarial phase's first batch the critic and the other terms; nothing compiles again (static
    shapes, guards that hold). Dynamo's AOT-eager backend: the same graphs and guards as inductor,
    without code generation (seconds instead of minutes on a CPU)."""
    compile_eager = torch.compile
    monkeypatch.setattr(torch, "compile", lambda *a, **k: compile_eager(*a, backend="aot_eager", **k))
    torch.manual_seed(0)
    system = TTSRSystem(GENERATOR, DISCRIMINATOR, LOSSES, {"warmup_epochs": 1, "gan_k": 2}, compile=True)
    graphs = GraphsPerBatch()
    snapshots = fit(system, epochs=2, batch_count=3, callbacks=[graphs])
    # batch starts 0..5, then the end
    assert graphs.graphs[1] > 0 and graphs.graphs[1] == graphs.graphs[2] == graphs.graphs[3], graphs.graphs
    assert graphs.graphs[4] > graphs.graphs[3] and graphs.graphs[4] == graphs.graphs[5] == graphs.graphs[6]
    assert not [key for key in system.state_dict() if "_orig_mod" in key]
    logged = snapshots.logged[1]
    assert all(torch.isfinite(system.trainer.callback_metrics[key]) for key in logged)
    with pytest.raises(ValueError, match="system.compile_mode must be one of"):
        TTSRSystem(GENERATOR, DISCRIMINATOR, LOSSES, {}, compile=True, compile_mode="fast")


@pytest.mark.slow
def test_a_compiled_step_equals_the_eager_one_within_fp32_rounding(fresh_dynamo: Any) -> None:
    """Inductor on the CPU (C++ code generation: minutes on two cores): the first batch of the
    adversarial phase (two critic steps, then the generator's) logs the same loss terms and critic
    statistics as the eager step within fp32 rounding (Adam turns rounding into sign-level updates only
    where a gradient is ~0, so the critic's second step and the generator's terms stay within 1e-4)."""
    logged = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        system = TTSRSystem(
            GENERATOR, DISCRIMINATOR, LOSSES, {"warmup_epochs": 0, "gan_k": 2}, compile=compiled
        )
        snapshots = fit(system, epochs=1, batch_count=1)
        logged[compiled] = {key: system.trainer.callback_metrics[key] for key in snapshots.logged[0]}
    assert set(logged[True]) == set(logged[False]) and "train/loss_adversarial" in logged[True]
    for key, eager in logged[False].items():
        torch.testing.assert_close(logged[True][key], eager, rtol=1e-4, atol=1e-6, msg=key)
