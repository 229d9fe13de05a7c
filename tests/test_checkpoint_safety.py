"""Checkpoints that cannot be lost: a writer SIGKILLed mid-checkpoint (its temporary folder on another
filesystem) or a full disk leaves the previous ``last.ckpt`` loadable and no temporary file; a resume
from a damaged, empty, foreign or mismatched file is refused in one line naming the file, what is
wrong, and the loadable checkpoints beside it."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from helpers.checkpoints import one_batch_run_checkpoint
from helpers.config import TINY_GENERATOR, compose_config
from helpers.file_faults import FullDisk
from ttsr_lightning import files
from ttsr_lightning.checkpoints.generator_file import save_generator
from ttsr_lightning.checkpoints.run_checkpoint import check_run_checkpoint
from ttsr_lightning.errors import CheckpointError
from ttsr_lightning.files import TEMPORARY_SUFFIX, remove_stale_temporaries
from ttsr_lightning.models import TTSRGenerator
from ttsr_lightning.system import TTSRSystem
from ttsr_lightning.train import train

SRC = Path(__file__).resolve().parents[1] / "src"

# The child: writes a new version of TARGET with AtomicCheckpointIO and freezes at PAUSE (after that
# many bytes of the temporary file, or "fsync": written whole, not yet renamed), then waits for SIGKILL.
WRITER = """
import io, os, sys, time
sys.path.insert(0, {src!r})
import torch
from ttsr_lightning import files
from ttsr_lightning.callbacks import AtomicCheckpointIO

target, marker, pause = sys.argv[1], sys.argv[2], sys.argv[3]
checkpoint = torch.load(target, weights_only=True)
checkpoint["epoch"] = 99

def freeze():
    open(marker, "w").close()
    time.sleep(600)

class Pausing(io.FileIO):
    def write(self, data):
        written = super().write(data)
        if pause != "fsync" and self.tell() >= int(pause):
            freeze()
        return written

files.open = lambda path, mode: Pausing(path, mode)
if pause == "fsync":
    os.fsync = lambda descriptor: freeze()
AtomicCheckpointIO().save_checkpoint(checkpoint, target)
"""


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return one_batch_run_checkpoint(tmp_path_factory.mktemp("good") / "last.ckpt", TINY_GENERATOR)


def other_filesystem_tmpdir() -> str | None:
    """A folder on a filesystem other than the tests' (tmpfs /dev/shm), or None where there is none."""
    shm = Path("/dev/shm")
    elsewhere = shm.is_dir() and shm.stat().st_dev != Path(tempfile.gettempdir()).stat().st_dev
    if elsewhere and os.access(shm, os.W_OK):
        return tempfile.mkdtemp(dir=shm)
    return None


@pytest.mark.parametrize("pause", ["1", "half", "fsync"])
def test_a_writer_killed_mid_checkpoint_leaves_the_previous_last_ckpt_loadable(
    tmp_path: Path, good_checkpoint: Path, pause: str
) -> None:
    """Real SIGKILLs, with TMPDIR on another filesystem where the machine has one (the case where a move
    through the system's temporary folder becomes copy-then-delete)."""
    run = tmp_path / "checkpoints"
    run.mkdir()
    last = run / "last.ckpt"
    last.write_bytes(good_checkpoint.read_bytes())
    before = torch.load(last, weights_only=True)
    marker = tmp_path / "frozen"
    size = last.stat().st_size
    other_tmpdir = other_filesystem_tmpdir()
    env = {**os.environ, **({"TMPDIR": other_tmpdir} if other_tmpdir else {})}
    point = str(size // 2) if pause == "half" else pause
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(src=str(SRC)), str(last), str(marker), point], env=env
    )
    try:
        deadline = time.monotonic() + 600  # a loaded machine imports torch slowly
        while not marker.exists():
            assert writer.poll() is None, f"the writer ended (rc {writer.returncode}) before its pause"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    after = torch.load(last, weights_only=True)
    assert after["epoch"] == before["epoch"] != 99
    assert all(torch.equal(v, after["state_dict"][k]) for k, v in before["state_dict"].items())
    leftovers = [p for p in run.iterdir() if p.name.endswith(TEMPORARY_SUFFIX)]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".last.ckpt.")  # beside, not in TMPDIR
    if other_tmpdir:
        assert os.listdir(other_tmpdir) == []
        os.rmdir(other_tmpdir)
    assert remove_stale_temporaries(run) == leftovers  # what the next start does
    assert [p.name for p in run.iterdir()] == ["last.ckpt"]


def test_a_full_disk_during_training_keeps_the_last_good_checkpoints(
    tmp_path: Path, sample_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trainer of ``train`` writes through AtomicCheckpointIO: the 4th checkpoint write hits ENOSPC
    halfway; the run stops with an OSError naming the checkpoint, and every checkpoint left loads."""
    writes = {"count": 0}
    real_open = open

    def filling_open(path: str, mode: str) -> Any:
        writes["count"] += 1
        if writes["count"] < 4:
            return real_open(path, mode)
        return FullDisk(path, mode)

    monkeypatch.setattr(FullDisk, "room", 200_000)  # about half a tiny checkpoint
    monkeypatch.setattr(files, "open", filling_open, raising=False)
    overrides = [
        "test=false",
        "trainer.limit_train_batches=2",
        "callbacks.resume_checkpoint.every_n_batches=1",
    ]
    cfg = compose_config(tmp_path, sample_data_dir, overrides)
    with pytest.raises(OSError) as error:
        train(cfg)
    assert error.value.errno == errno.ENOSPC
    folder = tmp_path / "run" / "checkpoints"
    assert error.value.filename.startswith(str(folder))
    names = sorted(p.name for p in folder.iterdir())
    assert "last.ckpt" in names and not [n for n in names if n.endswith(TEMPORARY_SUFFIX)], names
    for name in names:
        assert torch.load(folder / name, weights_only=True)["state_dict"], name


def tiny_system(**generator: Any) -> TTSRSystem:
    return TTSRSystem(
        generator={"_target_": "ttsr_lightning.models.TTSRGenerator", **TINY_GENERATOR, **generator},
        discriminator=None,
        losses={
            "terms": {
                "reconstruction": {"_target_": "ttsr_lightning.losses.ReconstructionLoss", "weight": 1.0}
            }
        },
        optim={"warmup_epochs": 0},
    )


def damaged_files(folder: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """Each file a resume must refuse, and what its error must say."""
    cases: dict[str, tuple[Path, str]] = {}
    empty = folder / "empty.ckpt"
    empty.write_bytes(b"")
    cases["zero bytes"] = (empty, "the file is empty (0 bytes): its write was cut off")
    truncated = folder / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    cases["truncated"] = (truncated, "cannot be read as a torch file")
    text = folder / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    cases["text"] = (text, "cannot be read as a torch file")
    generator = folder / "generator.ckpt"
    save_generator(TTSRGenerator(**TINY_GENERATOR), generator)
    cases["generator file"] = (generator, "holds generator weights only, not a training run's state")
    foreign = folder / "foreign.ckpt"
    torch.save({"epoch": 3, "model": {"w": torch.zeros(1)}}, foreign)
    cases["foreign"] = (foreign, "not a Lightning checkpoint of a training run (top level ['epoch', 'model']")
    nan = folder / "nan.ckpt"
    checkpoint = torch.load(good, weights_only=True)
    checkpoint["state_dict"]["generator.main_net.SFE.conv_head.bias"][0] = float("nan")
    torch.save(checkpoint, nan)
    cases["nan weights"] = (
        nan,
        "the file is damaged: 1 tensor(s) hold NaN or infinity (generator.main_net.SFE.conv_head.bias)",
    )
    return cases


def test_a_resume_from_a_damaged_or_foreign_file_is_one_line_pointing_at_a_loadable_one(
    tmp_path: Path, good_checkpoint: Path
) -> None:
    good = tmp_path / "epoch000-psnr9.000.ckpt"
    good.write_bytes(good_checkpoint.read_bytes())
    system = tiny_system()
    check_run_checkpoint(good, system)  # the good one passes
    for case, (path, expected) in damaged_files(tmp_path, good).items():
        with pytest.raises(CheckpointError) as error:
            check_run_checkpoint(path, system)
        message = str(error.value)
        assert message.startswith(f"ckpt_path={path}: {expected}"), (case, message)
        assert message.endswith(f"; loadable in {tmp_path}: {good}"), (case, message)
        assert "\n" not in message, (case, message)


def test_resuming_another_architecture_names_the_differing_arguments_in_one_line(
    tmp_path: Path, good_checkpoint: Path
) -> None:
    """A model=small run resumed under another model: one line, not a size mismatch per tensor."""
    with pytest.raises(CheckpointError) as error:
        check_run_checkpoint(good_checkpoint, tiny_system(n_feats=16, num_res_blocks=[2, 1, 1, 1]))
    message = str(error.value)
    assert "its model differs from this run's: " in message
    assert "generator.n_feats=8 (this run: 16)" in message
    assert "generator.num_res_blocks=[1, 1, 1, 1] (this run: [2, 1, 1, 1])" in message
    assert message.endswith(f"; no other loadable checkpoint in {good_checkpoint.parent}")


def test_train_refuses_a_truncated_last_ckpt_before_fitting(tmp_path: Path, sample_data_dir: Path) -> None:
    last = tmp_path / "last.ckpt"
    last.write_bytes(b"PK\x03\x04 cut off")
    cfg = compose_config(tmp_path, sample_data_dir, [f"ckpt_path={last}", "test=false"])
    with pytest.raises(CheckpointError, match=rf"^ckpt_path={last}: cannot be read as a torch file"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing was trained or written
