"""Every ``--multirun`` command of README.md and experiments/README.md, run as printed.

Each command is taken from the document itself (continuation lines joined), started from a fresh
folder exactly as typed, with only tiny overrides appended at the end (the sample set, a small model,
one batch of each phase, no logger): the test sees what a user who copies the line gets. The SLURM
example also gets ``hydra/launcher=submitit_local`` and one CPU process appended (no SLURM here); the
submitit launcher runs the same code path in local processes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.config import SMOKE, TINY
from helpers.documented import documented_commands

DOCUMENTS = ("README.md", "experiments/README.md")
# the smoke run (sample set, one batch of each phase, no logger) with debug=tiny's generator: SMOKE alone
# keeps an experiment's widths; its schedule values still win over debug=tiny's (values apply last)
TINY_OVERRIDES = [*SMOKE, *TINY]
# appended to a command written for SLURM and GPUs, so that its jobs start here: submitit's local
# executor, one node, one task, no GPU (it refuses the command's nodes=2)
LOCAL_OVERRIDES = [
    "hydra/launcher=submitit_local",
    "hydra.launcher.nodes=1",
    "hydra.launcher.tasks_per_node=1",
    "hydra.launcher.gpus_per_node=0",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.num_nodes=1",
    "trainer.strategy=auto",
]


def documented_multirun_commands() -> list[tuple[str, str]]:
    """(document, command) for every shell line of a code block that runs ``--multirun``."""
    return [
        (document, command)
        for document in DOCUMENTS
        for command in documented_commands(document)
        if "--multirun" in command and command.startswith("python")
    ]


COMMANDS = documented_multirun_commands()


def test_the_documents_hold_the_sweeps_users_are_told_to_run() -> None:
    documents = {document for document, _ in COMMANDS}
    assert documents == set(DOCUMENTS)
    assert len(COMMANDS) >= 6
    assert any("ablation_csfi" in command for _, command in COMMANDS)  # the design card's Table 3 row


@pytest.mark.slow
@pytest.mark.parametrize(("document", "command"), COMMANDS, ids=[f"{d}:{c[:70]}" for d, c in COMMANDS])
def test_a_documented_sweep_runs_as_typed(
    document: str, command: str, tmp_path: Path, sample_data_dir: Path
) -> None:
    argv = shlex.split(command)
    assert argv[0] == "python"
    extra = [*TINY_OVERRIDES, f"paths.data_dir={sample_data_dir}"]
    if "submitit_slurm" in command:
        extra += LOCAL_OVERRIDES
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, *argv[1:], *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, f"{document}: {command}\n{result.stderr[-3000:]}"
    summaries = [json.loads(path.read_text()) for path in (tmp_path / "outputs").rglob("run.json")]
    experiments = re.search(r"\+experiment=(\S+)", command)
    expected = len(experiments.group(1).split(",")) if experiments else 1
    seeds = re.search(r"\bseed=(\S+)", command)
    expected *= len(seeds.group(1).split(",")) if seeds else 1
    assert len(summaries) == expected, f"{document}: {command} wrote {len(summaries)} runs"
    if experiments:
        assert {s["name"] for s in summaries} == set(experiments.group(1).split(","))
