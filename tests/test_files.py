"""files.py: atomic writes (a full disk or a kill leaves the previous file whole and no temporary file),
strict JSON, the run-folder lock, and outputs refused before they would overwrite an earlier result."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from helpers.file_faults import fill_disk_after, killed_writers_leftover
from ttsr_lightning.distributed import launched_as_rank_zero
from ttsr_lightning.errors import ConfigError
from ttsr_lightning.files import (
    RunFolderLock,
    atomic_write,
    check_new_output,
    check_output_folder,
    remove_stale_temporaries,
    remove_unfinished_writes,
    save_figure,
    write_json,
    write_text,
)

SRC = Path(__file__).resolve().parents[1] / "src"


def test_a_full_disk_leaves_the_previous_file_whole_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "results.json"
    write_text(target, "the earlier result\n")
    fill_disk_after(monkeypatch, room=5)
    with pytest.raises(OSError) as error:
        write_text(target, "a longer, newer result\n")
    assert error.value.errno == errno.ENOSPC
    assert error.value.filename == str(target)  # the one-line report names the destination
    assert target.read_text() == "the earlier result\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_an_exception_inside_the_writer_leaves_nothing_behind(tmp_path: Path) -> None:
    def failing(file: Any) -> None:
        file.write(b"half")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "a.bin", failing)
    assert list(tmp_path.iterdir()) == []


def test_the_temporary_file_is_a_sibling_of_its_destination_whatever_tmpdir_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "elsewhere"))
    seen: list[Path] = []
    atomic_write(tmp_path / "out" / "x.bin", lambda file: seen.append(Path(file.name)))
    assert seen[0].parent == tmp_path / "out" and seen[0].name.startswith(".x.bin.")
    assert (tmp_path / "out" / "x.bin").read_bytes() == b""


def test_stale_temporaries_of_dead_writers_are_removed_live_ones_kept(tmp_path: Path) -> None:
    stale = killed_writers_leftover(tmp_path, "last.ckpt")
    live = tmp_path / f".last.ckpt.{os.getppid()}.0123abcd.partial"
    unrelated = tmp_path / "notes.partial"
    for path in (live, unrelated):
        path.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, unrelated.name])
    # a caller holding the lock its writers held knows them gone: a live-looking pid is an unreaped one
    assert remove_stale_temporaries(tmp_path, writers_gone=True) == [live]
    assert [p.name for p in tmp_path.iterdir()] == [unrelated.name]


def test_a_command_removes_the_leftovers_of_its_folders_below_them_too_when_asked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    top = killed_writers_leftover(tmp_path / "run")
    below = killed_writers_leftover(tmp_path / "run" / "images" / "Set5", "baby.png")
    elsewhere = killed_writers_leftover(tmp_path / "other")
    assert remove_unfinished_writes([tmp_path / "run"]) == [top]  # one folder: not the ones below it
    assert below.exists()
    with caplog.at_level(logging.INFO, logger="ttsr_lightning.files"):
        assert remove_unfinished_writes([tmp_path / "run", tmp_path / "run"], recursive=True) == [below]
    assert caplog.messages == [f"removed {below}, the unfinished write of a killed run"]
    assert elsewhere.exists() and remove_unfinished_writes([tmp_path / "missing"]) == []


def test_a_figure_is_saved_atomically_in_the_format_its_suffix_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    save_figure(tmp_path / "plot.png", fig)
    save_figure(tmp_path / "plot.pdf", fig)
    before = (tmp_path / "plot.png").read_bytes()
    assert before[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "plot.pdf").read_bytes()[:5] == b"%PDF-"
    ax.plot([0, 1], [0, 1])
    fill_disk_after(monkeypatch, room=100)
    with pytest.raises(OSError, match="No space left on device") as error:
        save_figure(tmp_path / "plot.png", fig)
    plt.close(fig)
    assert error.value.filename == str(tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes() == before  # the previous figure, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.pdf", "plot.png"]


def test_json_is_strict_nonfinite_numbers_become_null_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    replaced = write_json(path, {"psnr": float("inf"), "rows": [{"ssim": float("nan")}, {"ssim": 1.0}]})
    assert replaced == ["psnr", "rows[0].ssim"]
    document = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"not strict: {name}"))
    assert document["psnr"] is None and document["rows"][1]["ssim"] == 1.0
    assert document["notes"] == ["null where the value is not finite (NaN or infinity): psnr, rows[0].ssim"]


def test_a_run_folder_is_locked_while_its_run_lives_and_free_once_it_is_killed(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", f"""
import sys, time
sys.path.insert(0, {str(SRC)!r})
from ttsr_lightning.files import RunFolderLock
lock = RunFolderLock({str(tmp_path)!r}).acquire()
print("locked", flush=True)
time.sleep(600)
"""],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        expected = rf"hydra.run.dir: the run folder {tmp_path} is in use"
        with pytest.raises(ConfigError, match=expected) as error:
            RunFolderLock(tmp_path).acquire()
        assert f"pid {holder.pid}" in str(error.value)
    finally:
        holder.kill()  # SIGKILL: nothing of the holder runs any more
        holder.wait()
    # the OS dropped the dead run's lock; one live run per folder, also within a process
    with RunFolderLock(tmp_path), pytest.raises(ConfigError, match="in use by a live run"):
        RunFolderLock(tmp_path).acquire()
    RunFolderLock(tmp_path).acquire().release()


def test_only_the_first_process_of_a_run_takes_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert launched_as_rank_zero()
    monkeypatch.setenv("LOCAL_RANK", "1")  # a rank started by Lightning's DDP launcher
    assert not launched_as_rank_zero()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("NODE_RANK", "1")
    assert not launched_as_rank_zero()


def test_outputs_that_exist_are_refused_unless_overwrite(tmp_path: Path) -> None:
    earlier = tmp_path / "scores.csv"
    earlier.write_text("earlier\n")
    with pytest.raises(ConfigError, match=r"out: .*scores.csv already holds an earlier result; pass ov"):
        check_new_output([earlier], "out", overwrite=False)
    check_new_output([earlier], "out", overwrite=True)
    (tmp_path / "x.csv").mkdir()
    with pytest.raises(ConfigError, match=r"out: .*x.csv is a folder; give a file path"):
        check_new_output([tmp_path / "x.csv"], "out", overwrite=True)
    with pytest.raises(ConfigError, match=r"out: cannot write into /dev/null/x: /dev/null is a file"):
        check_output_folder(Path("/dev/null/x"), "out")
    assert earlier.read_text() == "earlier\n"


def test_a_slow_writer_does_not_block_a_reader_of_the_previous_file(tmp_path: Path) -> None:
    """While a new version is being written, the destination still holds the previous one."""
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"previous")

    def slow(file: Any) -> None:
        file.write(b"new")
        assert target.read_bytes() == b"previous"
        time.sleep(0.01)

    atomic_write(target, slow)
    assert target.read_bytes() == b"new"
