"""A generator that is not TTSR (helpers/other_generator.py) plugged in by configuration alone: trained,
killed and resumed exactly, evaluated, run by the infer command, converted and counted, with no edit to
the package (the interface: ttsr_lightning/models/interface.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from omegaconf import DictConfig, open_dict
from PIL import Image

from helpers.config import TINY, TINY_GENERATOR, compose_config, compose_evaluate
from helpers.interrupt import SimulatedKill
from helpers.other_generator import DetailConvGenerator
from helpers.sigkill import assert_same_training_state
from ttsr_lightning import official
from ttsr_lightning.checkpoints.loading import load_generator, load_generator_weights
from ttsr_lightning.data import CUFED5Dataset
from ttsr_lightning.errors import CheckpointError, ConfigError
from ttsr_lightning.evaluate import evaluate
from ttsr_lightning.infer import prepare_inputs, super_resolve
from ttsr_lightning.metrics import y_psnr
from ttsr_lightning.models import TTSRGenerator
from ttsr_lightning.panel_images import to_uint8_image
from ttsr_lightning.tools.params import parameter_rows
from ttsr_lightning.train import train

TARGET = "helpers.other_generator.DetailConvGenerator"
REPO = Path(__file__).resolve().parents[1]
# debug=tiny's schedule with the other generator in place of TTSR's (Hydra overrides only: the value
# overrides below apply after debug=tiny's config, so its TTSR sizes go with the deleted node); every loss
# term it supports: reconstruction, perceptual (random VGG19), adversarial; not the transferal perceptual
OTHER = [
    *TINY,
    "~model.generator",
    f"+model.generator={{_target_: {TARGET}, channels: 8, layers: 2}}",
    "loss.terms.perceptual.vgg_weights=random",
    "loss.terms.transferal_perceptual.weight=0",
    "optim.warmup_epochs=0",
    "system.lpips=false",
    "test=false",
]


def compose_other(tmp_path: Path, data_dir: Path, overrides: list[str] = ()) -> DictConfig:
    return compose_config(tmp_path, data_dir, [*OTHER, *overrides], tiny=False)


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory: pytest.TempPathFactory, sample_data_dir: Path) -> Path:
    """last.ckpt of a whole run: 2 epochs of 2 batches, every loss term from the first batch."""
    folder = tmp_path_factory.mktemp("whole")
    train(compose_other(folder, sample_data_dir, ["callbacks.resume_checkpoint.every_n_batches=1"]))
    return folder / "run" / "checkpoints" / "last.ckpt"


def test_training_uses_the_default_hooks(whole_run: Path) -> None:
    checkpoint = torch.load(whole_run, weights_only=True)
    assert checkpoint["hyper_parameters"]["generator"] == {"_target_": TARGET, "channels": 8, "layers": 2}
    generator_keys = {key for key in checkpoint["state_dict"] if key.startswith("generator.")}
    assert generator_keys == {f"generator.{key}" for key in DetailConvGenerator().state_dict()}
    assert not any(key.startswith("lte_copy.") for key in checkpoint["state_dict"])
    # one parameter group (no parameter_groups()), with the optimiser's options; then the critic's
    generator_groups = checkpoint["optimizer_states"][0]["param_groups"]
    assert [group["name"] for group in generator_groups] == ["generator"]
    assert len(generator_groups[0]["params"]) == len(list(DetailConvGenerator().parameters()))
    assert len(checkpoint["optimizer_states"]) == 2
    assert checkpoint["callbacks"]["ResumeCheckpoint"]["batches_seen"] == 4


def test_killed_run_resumes_exactly(tmp_path: Path, sample_data_dir: Path, whole_run: Path) -> None:
    every_batch = ["callbacks.resume_checkpoint.every_n_batches=1"]
    killed = compose_other(tmp_path, sample_data_dir, every_batch)
    with open_dict(killed):
        killed.callbacks.kill = {"_target_": "helpers.interrupt.KillAfterBatch", "batch": 3}
    with pytest.raises(SimulatedKill):
        train(killed)
    checkpoint_path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    saved = torch.load(checkpoint_path, weights_only=True)
    assert saved["callbacks"]["ResumeCheckpoint"]["batches_seen"] == 3 and saved["epoch"] == 1  # 2nd epoch

    train(compose_other(tmp_path, sample_data_dir, [*every_batch, "ckpt_path=last"]))
    final, reference = (torch.load(path, weights_only=True) for path in (checkpoint_path, whole_run))
    assert final["state_dict"].keys() == reference["state_dict"].keys()
    assert_same_training_state(reference, final)


def test_the_transferal_perceptual_loss_needs_a_texture_extractor(
    tmp_path: Path, sample_data_dir: Path
) -> None:
    cfg = compose_other(tmp_path, sample_data_dir, ["loss.terms.transferal_perceptual.weight=0.01"])
    with pytest.raises(ConfigError) as error:
        train(cfg)
    assert str(error.value) == (
        "loss.terms.transferal_perceptual.weight must be 0 for a generator without texture transfer "
        "(DetailConvGenerator has no texture_extractor)"
    )


def test_evaluate_rebuilds_it_from_the_run_checkpoint(
    tmp_path: Path, sample_data_dir: Path, whole_run: Path
) -> None:
    overrides = [
        f"ckpt={whole_run}",
        "sets=[CUFED5_L1,CUFED5_all5]",  # one reference, and five at once
        "trainer.limit_test_batches=1",
        "lpips=false",
    ]  # max_memory: auto, TTSR's budget: this generator runs its whole forward
    cfg = compose_evaluate(tmp_path / "evaluate", sample_data_dir, overrides, data="sample")
    results = evaluate(cfg)
    assert [result["set"] for result in results] == ["CUFED5_L1", "CUFED5_all5"]
    # each set's one image, super-resolved by the run's trained generator (not a fresh one) and measured
    trained = DetailConvGenerator(channels=8, layers=2).eval()
    state_dict = torch.load(whole_run, weights_only=True)["state_dict"]
    trained.load_state_dict(
        {k.removeprefix("generator."): v for k, v in state_dict.items() if k.startswith("generator.")}
    )
    root = sample_data_dir / "sample" / "CUFED" / "test" / "CUFED5"
    for result, ref_level in zip(results, (1, "all5"), strict=True):
        item = CUFED5Dataset(root, ref_level=ref_level)[0]
        batch = {
            key: value[None] if torch.is_tensor(value) else [image[None] for image in value]
            for key, value in item.items()
            if key in ("lr", "lr_up", "ref", "ref_down_up", "hr")
        }
        with torch.no_grad():
            sr = trained(batch["lr"], batch["lr_up"], batch["ref"], batch["ref_down_up"]).sr
        assert result["psnr"] == pytest.approx(float(y_psnr(sr, batch["hr"])[0]), abs=1e-6), result
        assert result["psnr"] != result["psnr_bicubic"], result
    provenance = json.loads((tmp_path / "evaluate" / "results.json").read_text())["provenance"]
    # 4 batches of 1 + gan_k optimiser steps
    assert provenance["checkpoint"].startswith("training-run checkpoint (epoch 1, global step 12;")
    assert provenance["checkpoint"].endswith(f"_target_={TARGET}, channels=8, layers=2")
    assert provenance["generator"] == {"_target_": TARGET, "channels": 8, "layers": 2}


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    lr, ref = tmp_path / "lr.png", tmp_path / "ref.png"
    Image.fromarray(skimage.data.astronaut()[100:117, 100:123]).save(lr)
    Image.fromarray(skimage.data.astronaut()[60:110, 80:150]).save(ref)
    return lr, ref


def test_the_infer_command_rebuilds_it_from_the_run_checkpoint(
    tmp_path: Path, whole_run: Path, pair: tuple[Path, Path]
) -> None:
    lr, ref = pair
    out = tmp_path / "sr.png"
    command = [
        sys.executable, "-m", "ttsr_lightning.infer",
        f"lr={lr}", f"ref={ref}", f"out={out}", f"ckpt={whole_run}", "device=cpu",
        f"hydra.run.dir={tmp_path}",
    ]  # fmt: skip
    pythonpath = os.pathsep.join([str(REPO / "src"), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": pythonpath, "WANDB_MODE": "disabled"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    generator = load_generator(whole_run).generator
    assert isinstance(generator, DetailConvGenerator)
    inputs = prepare_inputs(Image.open(lr).convert("RGB"), [(Image.open(ref).convert("RGB"), ref)])
    expected = to_uint8_image(super_resolve(generator, inputs, torch.device("cpu")).sr[0])
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)


def test_convert_writes_a_generator_file_that_loads_and_initialises_a_run(
    tmp_path: Path, whole_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    converted = tmp_path / "other.ckpt"
    official.main(["convert", str(whole_run), str(converted)])
    printed = capsys.readouterr().out
    assert f"generator config: _target_={TARGET}, channels=8, layers=2" in printed
    payload = torch.load(converted, weights_only=True)
    assert payload["generator_config"] == {"_target_": TARGET, "channels": 8, "layers": 2}

    from_run, from_file = load_generator(whole_run).generator, load_generator(converted).generator
    assert from_run.state_dict().keys() == from_file.state_dict().keys()
    for key, value in from_run.state_dict().items():
        assert torch.equal(value, from_file.state_dict()[key]), key

    fresh = DetailConvGenerator(channels=8, layers=2)
    load_generator_weights(fresh, converted)  # init_weights of a new run
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), from_file.parameters(), strict=True))
    with pytest.raises(CheckpointError, match="holds a DetailConvGenerator, this run trains a TTSRGenerator"):
        load_generator_weights(TTSRGenerator(**TINY_GENERATOR), converted)


def test_a_checkpoint_whose_generator_cannot_be_imported_or_built_is_refused(
    tmp_path: Path, whole_run: Path
) -> None:
    checkpoint = torch.load(whole_run, weights_only=True)
    checkpoint["hyper_parameters"]["generator"]["_target_"] = "helpers.nowhere.Gone"
    moved = tmp_path / "moved.ckpt"
    torch.save(checkpoint, moved)
    with pytest.raises(CheckpointError, match="nor names a generator module that can be imported here"):
        load_generator(moved)
    checkpoint["hyper_parameters"]["generator"] = {"_target_": TARGET, "channels": 8, "depth": 3}
    torch.save(checkpoint, moved)
    with pytest.raises(CheckpointError, match=r"cannot be built \(.*unexpected keyword argument 'depth'"):
        load_generator(moved)


def test_the_parameter_table_counts_it() -> None:
    (row,) = parameter_rows({"other": {"_target_": TARGET, "channels": 8, "layers": 2}})
    expected = sum(parameter.numel() for parameter in DetailConvGenerator(channels=8, layers=2).parameters())
    assert (row.generator, row.generator_trainable, row.main_net, row.lte) == (expected, expected, 0, 0)
