"""The command line: a bad argument, file or config value is one line naming it and exit status 2; a
diverging run stops with exit status 1 and a line naming the non-finite term, leaving only finite
checkpoints; HYDRA_FULL_ERROR=1 shows the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import MissingConfigException
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import OmegaConf

from helpers.config import TINY
from ttsr_lightning.builders import instantiate_group, instantiate_node
from ttsr_lightning.cli import exit_code, one_line
from ttsr_lightning.errors import ConfigError


def run(
    module: str, *arguments: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "TTSR_SHOW_TRACEBACK")
    }
    environment.update({"WANDB_MODE": "disabled", **(env or {})})
    command = [sys.executable, "-m", module, *arguments]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=environment, timeout=600)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The last stderr line, which must be the only one starting with 'error:' and hold no traceback."""
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and "Error executing job" not in result.stderr, result.stderr
    assert sum(line.startswith("error:") for line in lines) == 1, result.stderr
    return lines[-1]


TRAIN, EVALUATE, INFER = "ttsr_lightning", "ttsr_lightning.evaluate", "ttsr_lightning.infer"


@pytest.mark.parametrize(
    ("module", "arguments", "expected"),
    [
        (TRAIN, ["foo=1"], "Could not override 'foo'. To append to your config use +foo=1"),
        (
            TRAIN,
            ["data=nowhere"],
            "In 'config': Could not find 'data/nowhere'; Available options in 'data': cufed",
        ),
        (
            TRAIN,
            ["optim.gan_k=0", *TINY],
            "optim.gan_k must be >= 1 (critic steps per generator step), got 0",
        ),
        (
            TRAIN,
            ["model.generator.n_feats=1", "logger=none"],
            "model.generator.n_feats: n_feats must be >= 2",
        ),
        (
            TRAIN,
            ["init_weights=/nowhere/TTSR.pt", *TINY],
            "init_weights: no weights file at /nowhere/TTSR.pt",
        ),
        (EVALUATE, [], "Missing mandatory value: ckpt"),
        (
            EVALUATE,
            ["ckpt=/nowhere/TTSR.pt", "logger=none", "data=sample"],
            "ckpt=/nowhere/TTSR.pt: no file there",
        ),
        (
            INFER,
            ["lr=missing.png", "ref=ref.png", "out=sr.png"],
            "lr: no image file or folder at missing.png",
        ),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_status_2(
    tmp_path: Path, module: str, arguments: list[str], expected: str
) -> None:
    result = run(module, *arguments, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert error_line(result).startswith(f"error: {expected}"), result.stderr[-2000:]


def test_hydra_full_error_shows_the_traceback(tmp_path: Path) -> None:
    result = run("ttsr_lightning.evaluate", cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "MissingMandatoryValue" in result.stderr


@pytest.mark.slow  # two training subprocesses
def test_a_diverging_run_stops_naming_the_term_and_leaves_only_finite_checkpoints(tmp_path: Path) -> None:
    """The run of the report: Adam at lr 1000 goes non-finite in its second batch."""
    run_dir = tmp_path / "run"
    result = run(
        "ttsr_lightning", "optim.generator.optimizer.lr=1000",
        "model.generator.bicubic_residual=false",  # the paper's net: no clamped skip to hold it finite
        f"hydra.run.dir={run_dir}", "callbacks.resume_checkpoint.every_n_batches=1", *TINY,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    line = error_line(result)
    assert line.startswith("error: non-finite loss or gradient at epoch 0, batch 1 of the epoch"), line
    assert "reconstruction=nan" in line
    message, command = line.split("; to skip it and continue: ")
    assert command.endswith(f"optim.max_nonfinite_skips=1 ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}")
    checkpoints = list((run_dir / "checkpoints").glob("*.ckpt"))
    assert checkpoints, "the good batch before the divergence was checkpointed"
    for path in checkpoints:
        checkpoint = torch.load(path, weights_only=True)
        tensors = list(checkpoint["state_dict"].values())
        for optimizer in checkpoint["optimizer_states"]:
            tensors += [
                t for state in optimizer["state"].values() for t in state.values() if torch.is_tensor(t)
            ]
        assert all(torch.isfinite(t).all() for t in tensors if t.is_floating_point()), path

    # the printed command, pasted as it is: the same folder, from the batch after the checkpoint, skipping it
    environment = {
        k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "TTSR_SHOW_TRACEBACK")
    }
    pasted = subprocess.run(
        command, shell=True, executable="/bin/bash", cwd=tmp_path, capture_output=True, text=True,
        env={**environment, "WANDB_MODE": "disabled"}, timeout=600,
    )  # fmt: skip
    assert f"resuming {run_dir / 'checkpoints' / 'last.ckpt'}" in (run_dir / "train.log").read_text()
    assert "epoch 0, batch 1 of the epoch (training batch 2 of the run)" in pasted.stderr
    assert "batch skipped (1 of optim.max_nonfinite_skips=1)" in pasted.stderr, pasted.stderr[-3000:]
    assert not (tmp_path / "outputs").exists()  # no other run folder
    # lr 1000 diverges again at the next batch: the continued run stops there, after the skipped one, and
    # its own command asks for one skip more
    assert pasted.returncode == 1, pasted.stderr[-3000:]
    again = error_line(pasted)
    assert "(training batch 3 of the run)" in again and "optim.max_nonfinite_skips=1;" in again, again
    assert again.endswith(f"optim.max_nonfinite_skips=2 ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}")


def test_a_failed_instantiation_names_its_config_key() -> None:
    critic = {"_target_": "ttsr_lightning.models.Discriminator", "in_size": 7}
    with pytest.raises(ConfigError) as caught:
        instantiate_node("model.discriminator", critic)
    assert one_line(caught.value) == (
        "model.discriminator: in_size must be a positive multiple of 32 (five stride-2 convs), got 7"
    )
    with pytest.raises(ConfigError, match="^callbacks.early: Error loading 'no.such.Callback'"):
        instantiate_group("callbacks", OmegaConf.create({"early": {"_target_": "no.such.Callback"}}))


def test_a_value_lightning_refuses_is_a_usage_error() -> None:
    """Lightning's Trainer refuses its own values (``max_epochs``, ``limit_*_batches``, ...) naming them;
    also when it does so outside an instantiation (at fit), it is the user's value: exit status 2."""
    refusal = MisconfigurationException(
        "`max_epochs` must be a non-negative integer or -1. You passed in -3."
    )
    assert exit_code(refusal) == 2
    assert one_line(refusal) == "`max_epochs` must be a non-negative integer or -1. You passed in -3."


def test_hydra_messages_are_joined_on_one_line() -> None:
    message = (
        "In 'config': Could not find 'x/y'\n\nAvailable options in 'x':\n\ta\n\tb\nConfig search path:\n\tp"
    )
    assert (
        one_line(MissingConfigException(message))
        == "In 'config': Could not find 'x/y'; Available options in 'x': a, b"
    )


def test_ttsr_train_installs_shell_completion_that_completes_experiment_names(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "ttsr-train"  # the console script of `pip install -e .`
    environment = {**os.environ, "COMP_LINE": "ttsr-train +experiment=ablation_t"}
    query = subprocess.run(
        [str(script), "-sc", "query=bash"], capture_output=True, text=True, env=environment, timeout=600
    )
    assert query.stdout.split() == [f"+experiment=ablation_tt{suffix}" for suffix in ("", "_c80", "_c96")]
    install = subprocess.run(
        [str(script), "-sc", "install=bash"], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert install.returncode == 0 and "-F hydra_bash_completion ttsr-train" in install.stdout
