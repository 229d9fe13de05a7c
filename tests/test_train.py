"""The training entry point end to end on the sample set: fit, checkpoints, resume, logs, config errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from omegaconf import open_dict

from helpers.config import compose_config
from helpers.interrupt import SimulatedKill
from helpers.sigkill import MULTISTEP_AT_EPOCH_1
from ttsr_lightning.callbacks import ResumeCheckpoint
from ttsr_lightning.errors import CheckpointError
from ttsr_lightning.system import TTSRSystem
from ttsr_lightning.train import train


def test_tiny_run_trains_validates_tests_and_writes_its_files(tmp_path: Path, sample_data_dir: Path) -> None:
    cfg = compose_config(tmp_path, sample_data_dir, ["name=tiny", "logger=csv", MULTISTEP_AT_EPOCH_1])
    metrics = train(cfg)
    run = tmp_path / "run"
    assert any(p.name.startswith("epoch") for p in (run / "checkpoints").iterdir())
    # last.ckpt holds the end of the last epoch, after its learning-rate step, although validation PSNR
    # (the untrained tiny net's, equal to bicubic's) never rose above epoch 0's
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["callbacks"]["ResumeCheckpoint"]["batches_seen"]) == (1, 4)
    assert [s["last_epoch"] for s in last["lr_schedulers"]] == [1]  # one epoch after the 1-epoch warm-up
    assert 0 < metrics["test/CUFED5_L1/ssim"] <= 1
    summary = json.loads((run / "run.json").read_text())
    assert summary["name"] == "tiny" and summary["smoke"] is True
    assert summary["params"]["params/discriminator"] > 0
    rows = (run / "test_per_image.csv").read_text().splitlines()
    assert rows[0] == "set,image,ref,reference,protocol,psnr,ssim,psnr_bicubic,ssim_bicubic"
    assert len(rows) == 1 + 9  # limit_test_batches=1: one image for each of the nine test sets
    assert {row.split(",")[4] for row in rows[1:]} == {"ttsr_official"}  # the default protocol
    # the test metrics of each set are its one image's measures
    levels = ("L1", "L2", "L3", "L4", "L5", "LR", "stitched", "stitched_masa", "all5")
    per_image = {row["set"]: row for row in csv.DictReader(rows)}
    assert set(per_image) == {f"CUFED5_{level}" for level in levels}
    for set_name, row in per_image.items():
        for measure in ("psnr", "ssim", "psnr_bicubic", "ssim_bicubic"):
            logged = metrics[f"test/{set_name}/{measure}"]
            assert logged == pytest.approx(float(row[measure]), abs=1e-5), (set_name, measure)
    assert summary["protocol"] == "ttsr_official"
    panels = list((run / "panels").rglob("*.png"))
    assert panels, "image panels were not written"
    assert (run / "csv").is_dir()  # the CSV logger's metrics.csv lives below
    logged = (next((run / "csv").rglob("metrics.csv"))).read_text().splitlines()[0]
    for key in ("train/loss_reconstruction", "val/psnr", "critic/gradient_penalty", "lr/generator"):
        assert key in logged


def test_killed_mid_epoch_run_resumes_exactly(tmp_path: Path, sample_data_dir: Path) -> None:
    common = [
        "trainer.limit_train_batches=4",  # debug=tiny's two epochs, of four batches
        "test=false",
        "callbacks.resume_checkpoint.every_n_batches=1",
    ]
    whole = compose_config(tmp_path / "whole", sample_data_dir, common)
    train(whole)
    reference = torch.load(tmp_path / "whole" / "run" / "checkpoints" / "last.ckpt", weights_only=True)

    killed = compose_config(tmp_path / "killed", sample_data_dir, common)
    with open_dict(killed):
        killed.callbacks.kill = {"_target_": "helpers.interrupt.KillAfterBatch", "batch": 6}
    with pytest.raises(SimulatedKill):
        train(killed)
    checkpoint_path = tmp_path / "killed" / "run" / "checkpoints" / "last.ckpt"
    saved = torch.load(checkpoint_path, weights_only=True)
    assert saved["callbacks"]["ResumeCheckpoint"]["batches_seen"] == 6 and saved["epoch"] == 1  # 2nd epoch

    resumed = compose_config(tmp_path / "killed", sample_data_dir, [*common, f"ckpt_path={checkpoint_path}"])
    train(resumed)
    final = torch.load(checkpoint_path, weights_only=True)
    assert final["callbacks"]["ResumeCheckpoint"]["batches_seen"] == 8  # nothing lost, nothing re-done
    for key, value in reference["state_dict"].items():
        assert torch.equal(value, final["state_dict"][key]), key
    for ours, theirs in zip(final["optimizer_states"], reference["optimizer_states"], strict=True):
        for param_id, state in theirs["state"].items():
            for name, tensor in state.items():
                assert torch.equal(tensor, ours["state"][param_id][name]), (param_id, name)


class CaptureRestoredState(Callback):
    """Records what the trainer restored, then stops the run before any step."""

    captured: dict[str, Any] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        CaptureRestoredState.captured = {
            "global_step": trainer.global_step,
            "batches_seen": next(
                c for c in trainer.callbacks if isinstance(c, ResumeCheckpoint)
            ).batches_seen,
            "optimizers": [optimizer.state_dict() for optimizer in trainer.optimizers],
        }
        raise SimulatedKill("stop after restoring")


def test_resume_restores_optimiser_state_at_the_saved_step(tmp_path: Path, sample_data_dir: Path) -> None:
    train(compose_config(tmp_path, sample_data_dir, ["trainer.max_epochs=1", "test=false"]))
    checkpoint_path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    saved = torch.load(checkpoint_path, weights_only=True)

    resumed = compose_config(
        tmp_path, sample_data_dir, ["trainer.max_epochs=2", f"ckpt_path={checkpoint_path}"]
    )
    with open_dict(resumed):
        resumed.callbacks.capture = {"_target_": f"{__name__}.CaptureRestoredState"}
    with pytest.raises(SimulatedKill):
        train(resumed)
    captured = CaptureRestoredState.captured
    assert captured["global_step"] == saved["global_step"]
    assert captured["batches_seen"] == saved["callbacks"]["ResumeCheckpoint"]["batches_seen"] == 2
    restored, original = captured["optimizers"][0], saved["optimizer_states"][0]
    assert [g["lr"] for g in restored["param_groups"]] == [g["lr"] for g in original["param_groups"]]
    for param_id, state in original["state"].items():
        assert torch.equal(state["exp_avg"], restored["state"][param_id]["exp_avg"])
        assert torch.equal(state["exp_avg_sq"], restored["state"][param_id]["exp_avg_sq"])
    assert isinstance(TTSRSystem.load_from_checkpoint(checkpoint_path, map_location="cpu"), TTSRSystem)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.gan_k=0", "optim.gan_k"),
        ("loss.terms.perceptual.weight=-1", "loss.terms.perceptual.weight"),
        ("data.train.train_root=/nonexistent/CUFED/train", "/nonexistent/CUFED/train"),
        ("ckpt_path=/nonexistent/last.ckpt", "ckpt_path"),
        ("trainer.max_epochs=1", "optim.warmup_epochs"),
    ],
)
def test_bad_config_fails_at_start_naming_the_key(
    tmp_path: Path, sample_data_dir: Path, override: str, message: str
) -> None:
    cfg = compose_config(tmp_path, sample_data_dir, ["optim.warmup_epochs=2", override])
    with pytest.raises(Exception, match=message):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


class CaptureStartingWeights(Callback):
    """Records the generator's weights when training starts, then stops the run."""

    weights: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        assert isinstance(pl_module, TTSRSystem)
        CaptureStartingWeights.weights = {k: v.clone() for k, v in pl_module.generator.state_dict().items()}
        raise SimulatedKill("stop after initialising")


def test_init_weights_fine_tunes_from_a_previous_runs_last_checkpoint(
    tmp_path: Path, sample_data_dir: Path
) -> None:
    train(compose_config(tmp_path / "first", sample_data_dir, ["trainer.max_epochs=1", "test=false"]))
    previous = tmp_path / "first" / "run" / "checkpoints" / "last.ckpt"
    trained = torch.load(previous, weights_only=True)["state_dict"]

    finetune = compose_config(tmp_path / "second", sample_data_dir, [f"init_weights={previous}", "seed=7"])
    with open_dict(finetune):
        finetune.callbacks.capture = {"_target_": f"{__name__}.CaptureStartingWeights"}
    with pytest.raises(SimulatedKill):
        train(finetune)
    for key, value in CaptureStartingWeights.weights.items():
        assert torch.equal(value, trained[f"generator.{key}"]), key
    # a new run: its own optimiser, epochs and schedule (only the generator's weights are taken over)
    assert not (tmp_path / "second" / "run" / "checkpoints" / "last.ckpt").exists()

    wider = compose_config(
        tmp_path / "third", sample_data_dir, [f"init_weights={previous}", "model.generator.n_feats=12"]
    )
    with pytest.raises(
        CheckpointError, match=r"its generator differs from this run's: n_feats=8 \(this run: 12\)"
    ):
        train(wider)


def test_tensorboard_logger_writes_its_events(tmp_path: Path, sample_data_dir: Path) -> None:
    overrides = ["logger=tensorboard", "trainer.max_epochs=1", "trainer.limit_train_batches=1", "test=false"]
    train(compose_config(tmp_path, sample_data_dir, overrides))
    assert list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))
