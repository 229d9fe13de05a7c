"""`python -m ttsr_lightning.official convert`: any weights file -> the project's generator file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.file_faults import killed_writers_leftover
from ttsr_lightning.checkpoints.loading import load_generator
from ttsr_lightning.official import main


@pytest.fixture(scope="module")
def official_weights(shared_fixtures: Path) -> Path:
    return shared_fixtures / "official_small_G.pt"


def test_convert_prints_what_it_did(
    official_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["convert", str(official_weights), str(tmp_path / "small.ckpt")])
    printed = capsys.readouterr().out
    assert f"{official_weights}: official TTSR state dict (104 tensors)" in printed
    assert "read 104 tensors" in printed and "LTE.sub_mean" in printed
    assert "n_feats=16, num_res_blocks=[1, 1, 1, 1]" in printed and "102 tensors" in printed
    restored = load_generator(tmp_path / "small.ckpt").generator
    for key, value in load_generator(official_weights).generator.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value)


def test_convert_runs_as_a_module_and_errors_in_one_line(official_weights: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "ttsr_lightning.official", "convert"]
    result = subprocess.run(
        [*command, str(official_weights), str(tmp_path / "o.ckpt")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and (tmp_path / "o.ckpt").is_file()
    (tmp_path / "notes.txt").write_text("not weights")
    result = subprocess.run(
        [*command, str(tmp_path / "notes.txt"), str(tmp_path / "x.ckpt")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(
        f"error: {tmp_path / 'notes.txt'}: cannot be read"
    )
    assert not (tmp_path / "x.ckpt").exists()


def test_a_killed_writers_leftover_beside_the_output_is_removed_at_the_start(
    official_weights: Path, tmp_path: Path
) -> None:
    leftover = killed_writers_leftover(tmp_path, "small.ckpt")
    main(["convert", str(official_weights), str(tmp_path / "small.ckpt")])
    assert [path.name for path in tmp_path.iterdir()] == ["small.ckpt"]
    assert not leftover.exists()
