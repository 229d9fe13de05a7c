"""One line for every mistake: bad values, bad inputs and failing paths of every entry point (train,
evaluate, infer, score, official convert, data.prepare) give one ``error:`` line naming the key or path,
the right exit status and no traceback, and overwrite nothing.

Run in-process through each entry point's ``main`` (the same code as ``python -m ...``, without the
seconds of a new interpreter per case)."""

from __future__ import annotations

import errno
import io
import json
import logging
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from helpers.command_line import error_lines
from helpers.config import TINY, TINY_GENERATOR
from helpers.file_faults import fill_disk_after
from ttsr_lightning import files
from ttsr_lightning.__main__ import main as train_main
from ttsr_lightning.checkpoints.generator_file import save_generator
from ttsr_lightning.cli import exit_code, one_line
from ttsr_lightning.data import prepare
from ttsr_lightning.data.errors import ImageError
from ttsr_lightning.data.image_io import RGBImageReader, image_size
from ttsr_lightning.evaluate import main as evaluate_main
from ttsr_lightning.files import RunFolderLock
from ttsr_lightning.infer import InferenceJob, check_image_sizes
from ttsr_lightning.infer import main as infer_main
from ttsr_lightning.models import TTSRGenerator
from ttsr_lightning.official import main as official_main
from ttsr_lightning.score import main as score_main


def one_error_line(
    main: Callable[[], None], args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> tuple[int, str]:
    """Runs ``main`` with ``args`` as its command line; returns its exit status and its one error line."""
    status, lines = error_lines(main, args, monkeypatch, capsys)
    assert len(lines) == 1, lines
    return status, lines[0]


def png(path: Path, size: tuple[int, int] = (8, 8), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def png_16_bit(path: Path) -> Path:
    """An RGB PNG with 16 bits per channel (Pillow cannot write one; built from its chunks)."""
    height, width = 4, 4
    samples = (np.arange(height * width * 3, dtype=np.uint16).reshape(height, width, 3) * 1000).astype(">u2")
    raw = b"".join(b"\x00" + samples[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


# ------------------------------------------------------------------------------------------- train
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optim.gan_k=abc", "optim.gan_k: Value 'abc' of type 'str' could not be converted to Integer"),
        ("optim.gan_k=1.5", "optim.gan_k: Value '1.5' of type 'float' could not be converted to Integer"),
        ("+optim.gan_steps=2", "optim.gan_steps: Key 'gan_steps' not in 'OptimConfig'"),
        # an optimiser's arguments are its class's: torch refuses them, under the optimiser's key
        ("optim.generator.optimizer.lr=abc", "optim.generator.optimizer: '<=' not supported"),
        ("optim.generator.optimizer.betas=[0.9]", "optim.generator.optimizer: list index out of range"),
        ("trainer.max_epochs=abc", "trainer.max_epochs: expected an integer or null, got 'abc'"),
        # Lightning's Trainer refuses its own values, naming them
        ("trainer.max_epochs=-3", "trainer: `max_epochs` must be a non-negative integer or -1"),
        (
            "trainer.limit_val_batches=1.5",
            "trainer: You have passed invalid value 1.5 for limit_val_batches",
        ),
        ("trainer.precision=abc", "trainer: Precision 'abc' is invalid"),
        (
            "trainer.log_every_n_steps=0",
            "trainer.log_every_n_steps: expected an integer >= 1, or null, got 0",
        ),
        ("seed=abc", "seed: expected an integer, got 'abc'"),  # named as typed, not as ${seed} in data
        ("seed=-1", "seed must be in [0, 2**32), got -1"),
        (
            "data.train.batch_size=abc",
            "data.train.batch_size: Value 'abc' of type 'str' could not be converted to Integer",
        ),
        (
            "data.train.num_workers=1.5",
            "data.train.num_workers: Value '1.5' of type 'float' could not be converted to Integer",
        ),
        (
            "model.generator.n_feats=abc",
            "model.generator.n_feats: Value 'abc' of type 'str' could not be converted to Integer",
        ),
        (
            "model.generator.num_res_blocks=[1,a,1,1]",
            "model.generator.num_res_blocks[1]: Value 'a' of type 'str' could not be converted to Integer",
        ),
        (
            "loss.terms.perceptual.weight=abc",
            "loss.terms.perceptual.weight: Value 'abc' of type 'str' could not be converted to Float",
        ),
        ("system.compile=maybe", "system.compile: Value 'maybe' is not a valid bool"),
        ("+system.fast=true", "system.fast: Key 'fast' not in 'SystemConfig'"),
        # a callback's arguments are its class's: the class refuses them, under the callback's key
        ("callbacks.model_checkpoint.save_top_k=abc", "callbacks.model_checkpoint: '<' not supported"),
    ],
)
def test_a_wrongly_typed_or_out_of_range_value_is_one_line_and_exit_2(
    tmp_path: Path,
    sample_data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    override: str,
    expected: str,
) -> None:
    args = [*TINY, f"paths.data_dir={sample_data_dir}", f"hydra.run.dir={tmp_path / 'run'}", override]
    status, line = one_error_line(train_main, args, monkeypatch, capsys)
    assert status == 2 and line.startswith(f"error: {expected}"), line


def test_a_value_the_trainer_refuses_comes_before_any_data_is_read_or_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    data_dir = tmp_path / "data"  # the sample set would be built here on first use
    args = [*TINY, f"paths.data_dir={data_dir}", f"hydra.run.dir={tmp_path / 'run'}", "+trainer.max_steps=-3"]
    status, line = one_error_line(train_main, args, monkeypatch, capsys)
    assert status == 2 and line.startswith("error: trainer: `max_steps` must be a non-negative integer"), line
    assert not data_dir.exists()


def test_train_refuses_a_busy_run_folder_an_empty_checkpoint_and_impossible_paths(
    tmp_path: Path, sample_data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    common = [*TINY, f"paths.data_dir={sample_data_dir}"]
    busy = tmp_path / "busy"
    with RunFolderLock(busy):  # a live run holds the folder
        status, line = one_error_line(train_main, [*common, f"hydra.run.dir={busy}"], monkeypatch, capsys)
    assert status == 2
    assert line.startswith(f"error: hydra.run.dir: the run folder {busy} is in use by a live run (pid "), line

    empty = tmp_path / "last.ckpt"
    empty.write_bytes(b"")
    args = [*common, f"hydra.run.dir={tmp_path / 'resumed'}", f"ckpt_path={empty}"]
    status, line = one_error_line(train_main, args, monkeypatch, capsys)
    assert status == 2 and line.startswith(f"error: ckpt_path={empty}: the file is empty (0 bytes)"), line

    status, line = one_error_line(train_main, [*common, "hydra.run.dir=/dev/null/run"], monkeypatch, capsys)
    assert status == 2 and line == "error: /dev/null/run: Not a directory", line

    # a data folder that cannot be created (the sample set is built there on first use)
    args = [*TINY, "paths.data_dir=/dev/null/data"]
    status, line = one_error_line(train_main, [*args, f"hydra.run.dir={tmp_path / 'r'}"], monkeypatch, capsys)
    assert status == 2 and line == "error: /dev/null/data/sample: Not a directory", line


# ------------------------------------------------------------------------------------------- infer
@pytest.fixture
def infer_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    png(tmp_path / "lr.png")
    png(tmp_path / "ref.png", (16, 16), seed=1)
    return tmp_path


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["lr=lr.png", "ref=ref.png", "out="], "out: empty; expected the path of an image file or a folder"),
        (["lr=", "ref=ref.png", "out=sr.png"], "lr: empty"),
        (["lr=lr.png", "ref=", "out=sr.png"], "ref: empty; expected an image file, a folder, or a list"),
        (["lr=lr.png", "ref=[]", "out=sr.png"], "ref: [] names no reference"),
        (["lr=lr.png", "ref=','", "out=sr.png"], "ref: ',' has an empty entry"),
        (["lr=lr.png", "ref=[ref.png,'']", "out=sr.png"], "ref: ['ref.png', ''] has an empty entry"),
        (
            ["lr=lr.png", "ref=ref.png", "out=sr.png", "device=meta"],
            "device: expected auto, cpu, cuda or cuda:N",
        ),
        (
            ["lr=lr.png", "ref=ref.png", "out=/dev/null/sr.png"],
            "out: cannot write into /dev/null: /dev/null is",
        ),
        # the images are decoded before the checkpoint is looked at
        (["lr=cut.png", "ref=ref.png", "out=sr.png", "ckpt=/nowhere.pt"], "cut.png: cannot decode image"),
        (["lr=deep.png", "ref=ref.png", "out=sr.png", "ckpt=/nowhere.pt"], "deep.png: 16 bits per channel"),
    ],
)
def test_infer_refuses_bad_values_and_inputs_before_the_model_loads(
    infer_inputs: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    args: list[str],
    expected: str,
) -> None:
    whole = (infer_inputs / "lr.png").read_bytes()
    (infer_inputs / "cut.png").write_bytes(whole[: len(whole) * 2 // 3])
    png_16_bit(infer_inputs / "deep.png")
    before = sorted(p.name for p in infer_inputs.iterdir())
    status, line = one_error_line(infer_main, args, monkeypatch, capsys)
    assert status == 2 and line.startswith(f"error: {expected}"), line
    assert sorted(p.name for p in infer_inputs.iterdir()) == before  # nothing written
    assert (infer_inputs / "lr.png").read_bytes() == whole


# ----------------------------------------------------------------------------------- image inputs
def test_exif_orientation_is_applied_as_viewers_do_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stored = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 12, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    paths = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    for path in paths:
        stored.save(path, exif=exif, quality=95)
    reader = RGBImageReader("infer")
    with caplog.at_level(logging.WARNING):
        images = [reader.read(path) for path in paths]
    assert images[0].size == (8, 12)  # 12 wide, 8 high as stored: 8 wide, 12 high as shown
    with Image.open(paths[0]) as opened:
        assert np.array_equal(np.asarray(images[0]), np.asarray(ImageOps.exif_transpose(opened)))
    assert image_size(paths[0]) == (8, 12)
    turned = [r for r in caplog.records if "EXIF orientation" in r.getMessage()]
    assert len(turned) == 1 and str(paths[0]) in turned[0].getMessage()
    # what the generator sees: the LR as shown (height 12, width 8)
    job = InferenceJob(paths[0], (paths[1],), tmp_path / "sr.png")
    assert check_image_sizes([job]) == [((12, 8), [(12, 8)])]


def test_a_16_bit_rgb_png_is_refused_not_cut_to_8_bits(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"deep.png: 16 bits per channel \(RGB\); expected 8 bits"):
        RGBImageReader("infer").read(png_16_bit(tmp_path / "deep.png"))


# ------------------------------------------------------------------------------------------- score
@pytest.fixture
def score_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for stem, seed in (("000_0", 0), ("001_0", 1)):
        png(tmp_path / "hr" / f"{stem}.png", (16, 16), seed)
        png(tmp_path / "sr" / f"{stem}.png", (16, 16), seed + 10)
    return tmp_path


def test_score_refuses_duplicates_itself_and_outputs_it_would_overwrite(
    score_folders: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    earlier = score_folders / "scores.csv"
    earlier.write_text("an earlier result\n")
    (score_folders / "folder.csv").mkdir()
    duplicated = score_folders / "duplicated"
    png(duplicated / "000_0.png", (16, 16))
    png(duplicated / "000_0.jpg", (16, 16)).rename(duplicated / "000_0.jpg")
    cases = [
        (
            ["sr=sr", "hr=hr", "out=scores.csv"],
            "out: scores.csv already holds an earlier result; pass overwrite",
        ),
        (["sr=sr", "hr=hr", "out=folder.csv"], "out: folder.csv is a folder; give a file path"),
        (["sr=sr", "hr=hr", "out=/dev/null/x.csv"], "out: cannot write into /dev/null: /dev/null is a file"),
        (["sr=sr", "hr=hr", "out="], "out: empty; expected the path of a .csv file"),
        (["sr=hr", "hr=hr", "out=self.csv"], "sr: hr is the hr folder"),
        (["sr=duplicated", "hr=hr", "out=d.csv"], "sr: several images share the stem(s) ['000_0']"),
    ]
    for args, expected in cases:
        status, line = one_error_line(score_main, args, monkeypatch, capsys)
        assert status == 2 and line.startswith(f"error: {expected}"), (args, line)
    assert earlier.read_text() == "an earlier result\n"
    assert not (score_folders / "self.csv").exists() and not (score_folders / "d.csv").exists()

    monkeypatch.setattr(sys, "argv", ["score", "sr=sr", "hr=hr", "out=scores.csv", "overwrite=true"])
    score_main()
    assert earlier.read_text().startswith("image,protocol,psnr")
    assert f"wrote scores.csv and {Path('scores.summary.json')}" in capsys.readouterr().out


def test_score_writes_strict_json_when_an_sr_equals_its_hr(
    score_folders: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (score_folders / "copy").mkdir()
    (score_folders / "copy" / "000_0.png").write_bytes((score_folders / "hr" / "000_0.png").read_bytes())
    monkeypatch.setattr(sys, "argv", ["score", "sr=copy", "hr=hr", "out=same.csv"])
    score_main()
    text = (score_folders / "same.summary.json").read_text()
    summary = json.loads(text, parse_constant=lambda name: pytest.fail(f"not strict JSON: {name}"))
    assert summary["protocols"][0]["psnr"] is None and summary["protocols"][0]["ssim"] == 1.0
    assert summary["notes"] == ["null where the value is not finite (NaN or infinity): protocols[0].psnr"]


def test_a_full_disk_or_a_denied_path_is_one_line_naming_the_file_and_leaves_nothing(
    score_folders: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    fill_disk_after(monkeypatch, room=10)
    status, line = one_error_line(score_main, ["sr=sr", "hr=hr", "out=full.csv"], monkeypatch, capsys)
    assert status == 1 and line == "error: full.csv: No space left on device", line

    def denied(path: str, mode: str) -> io.FileIO:  # simulated: root is never denied by permissions
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(files, "open", denied, raising=False)
    status, line = one_error_line(score_main, ["sr=sr", "hr=hr", "out=denied.csv"], monkeypatch, capsys)
    assert status == 2 and line == "error: denied.csv: Permission denied", line
    assert not [p for p in score_folders.iterdir() if p.suffix in (".csv", ".json", ".partial")]


def test_os_errors_are_one_line_naming_the_path() -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "/runs/a/last.ckpt")
    assert one_line(full) == "/runs/a/last.ckpt: No space left on device" and exit_code(full) == 1
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/CUFED")
    assert one_line(missing) == "/data/CUFED: No such file or directory" and exit_code(missing) == 2
    assert (
        one_line(FileNotFoundError("lr: no image file or folder at x.png"))
        == "lr: no image file or folder at x.png"
    )


# -------------------------------------------------------------------------------------- evaluate
def test_evaluate_never_overwrites_an_earlier_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "evaluation"
    run.mkdir()
    (run / "results.json").write_text('{"earlier": true}\n')
    data = f"paths.data_dir={tmp_path / 'data'}"  # the sample set: only the checkpoint is missing
    args = ["ckpt=/nowhere/TTSR.pt", "logger=none", f"hydra.run.dir={run}", "data=sample", data]
    status, line = one_error_line(evaluate_main, args, monkeypatch, capsys)
    assert status == 2
    assert line.startswith(f"error: hydra.run.dir: {run / 'results.json'} already holds an earlier result"), (
        line
    )
    assert (run / "results.json").read_text() == '{"earlier": true}\n'
    status, line = one_error_line(evaluate_main, [*args, "overwrite=true"], monkeypatch, capsys)
    assert line.startswith("error: ckpt=/nowhere/TTSR.pt: no file there"), line  # past the check


# ---------------------------------------------------------- official convert and data.prepare
def test_convert_and_prepare_report_impossible_paths_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    weights = tmp_path / "generator.ckpt"
    save_generator(TTSRGenerator(**TINY_GENERATOR), weights)
    cases = [
        (
            lambda: official_main(["convert", str(weights), "/dev/null/out.ckpt"]),
            "error: /dev/null: is a file, not a folder",
        ),
        (lambda: official_main(["convert", str(weights), str(tmp_path)]), f"error: {tmp_path}: is a folder"),
        (lambda: prepare.main(["sample", "/dev/null/sample"]), "error: /dev/null/sample: Not a directory"),
    ]
    for call, expected in cases:
        status, line = one_error_line(call, [], monkeypatch, capsys)
        assert status == 2 and line.startswith(expected), line
