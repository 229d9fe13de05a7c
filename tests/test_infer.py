"""infer: single pairs and folders, attention pictures, search-transfer choice, error messages."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from helpers.config import TINY_GENERATOR, compose_infer
from helpers.file_faults import killed_writers_leftover
from ttsr_lightning.budgeted import DEFAULT_HALO, plan_forward
from ttsr_lightning.checkpoints.generator_file import save_generator
from ttsr_lightning.checkpoints.loading import load_generator
from ttsr_lightning.data.errors import ImageError
from ttsr_lightning.errors import ConfigError
from ttsr_lightning.infer import infer, prepare_inputs, super_resolve
from ttsr_lightning.models import TTSRGenerator
from ttsr_lightning.models.lean_search_transfer import LeanSearchTransfer
from ttsr_lightning.panel_images import to_uint8_image


def photo(top: int, left: int, height: int, width: int, name: str = "astronaut") -> Image.Image:
    return Image.fromarray(getattr(skimage.data, name)()[top : top + height, left : left + width])


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    save_generator(TTSRGenerator(**TINY_GENERATOR), path)
    return path


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """An LR of 23x17 px (width x height, odd sizes) and a reference of 70x50 (cropped to 68x48)."""
    lr, ref = tmp_path / "lr.png", tmp_path / "ref.png"
    photo(100, 100, 17, 23).save(lr)
    photo(60, 80, 50, 70).save(ref)
    return lr, ref


def direct_sr(ckpt: Path, lr: Path, ref: Path) -> np.ndarray:
    """The SR of the same generator and preprocessing, without the command's file handling."""
    generator = load_generator(ckpt).generator
    inputs = prepare_inputs(Image.open(lr).convert("RGB"), [(Image.open(ref).convert("RGB"), ref)])
    return to_uint8_image(super_resolve(generator, inputs, torch.device("cpu")).sr[0])


def test_single_pair_writes_the_sr_and_its_attention_picture(
    tmp_path: Path, pair: tuple[Path, Path], ckpt: Path
) -> None:
    lr, ref = pair
    out = tmp_path / "results" / "sr.png"
    written = infer(
        compose_infer([f"lr={lr}", f"ref={ref}", f"out={out}", f"ckpt={ckpt}", "save_attention=true"])
    )
    attention = tmp_path / "results" / "sr_attention.png"
    assert written == [out, attention]
    sr = np.asarray(Image.open(out))
    assert sr.shape == (4 * 17, 4 * 23, 3)
    np.testing.assert_array_equal(sr, direct_sr(ckpt, lr, ref))
    # SR | soft attention | correspondences (each 92 px wide) | Ref 68x48 scaled to 96x68; 4 px gaps
    panel = np.asarray(Image.open(attention))
    assert panel.shape == (68, 3 * 92 + 96 + 3 * 4, 3)
    np.testing.assert_array_equal(panel[:, :92], sr)


def test_folders_pair_by_stem_or_share_one_reference(tmp_path: Path, ckpt: Path) -> None:
    lr_dir, ref_dir = tmp_path / "lr", tmp_path / "ref"
    lr_dir.mkdir()
    ref_dir.mkdir()
    photo(100, 100, 16, 20).save(lr_dir / "a.png")
    photo(20, 40, 12, 9, "coffee").save(lr_dir / "b.bmp")
    photo(60, 80, 40, 44).save(ref_dir / "a.jpg")
    photo(0, 0, 36, 28, "coffee").save(ref_dir / "b.png")
    (ref_dir / "unused.png").write_bytes((ref_dir / "b.png").read_bytes())

    out_dir = tmp_path / "by_stem"
    written = infer(compose_infer([f"lr={lr_dir}", f"ref={ref_dir}", f"out={out_dir}", f"ckpt={ckpt}"]))
    assert written == [out_dir / "a.png", out_dir / "b.png"]
    assert np.asarray(Image.open(out_dir / "a.png")).shape == (64, 80, 3)
    assert np.asarray(Image.open(out_dir / "b.png")).shape == (48, 36, 3)
    np.testing.assert_array_equal(
        np.asarray(Image.open(out_dir / "b.png")), direct_sr(ckpt, lr_dir / "b.bmp", ref_dir / "b.png")
    )

    shared_dir = tmp_path / "shared_ref"
    shared = ref_dir / "b.png"
    overrides = [f"lr={lr_dir}", f"ref={shared}", f"out={shared_dir}", f"ckpt={ckpt}", "save_attention=true"]
    written = infer(compose_infer(overrides))
    assert [path.name for path in written] == ["a.png", "a_attention.png", "b.png", "b_attention.png"]
    np.testing.assert_array_equal(
        np.asarray(Image.open(shared_dir / "a.png")), direct_sr(ckpt, lr_dir / "a.png", shared)
    )


def test_lr_file_into_an_out_folder(tmp_path: Path, pair: tuple[Path, Path], ckpt: Path) -> None:
    lr, ref = pair
    written = infer(
        compose_infer([f"lr={lr}", f"ref={ref}", f"out={tmp_path / 'sr_images'}", f"ckpt={ckpt}"])
    )
    assert written == [tmp_path / "sr_images" / "lr.png"]


def test_without_checkpoint_random_weights_are_announced_loudly(
    tmp_path: Path, pair: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    lr, ref = pair
    with caplog.at_level(logging.WARNING, logger="ttsr_lightning.infer"):
        written = infer(compose_infer([f"lr={lr}", f"ref={ref}", f"out={tmp_path / 'sr.png'}"]))
    assert written == [tmp_path / "sr.png"]
    assert "NO CHECKPOINT (ckpt=null): the generator has RANDOM weights" in caplog.text


def test_search_transfer_is_the_lean_one_and_unknown_names_are_refused(
    tmp_path: Path, pair: tuple[Path, Path], ckpt: Path
) -> None:
    loaded = load_generator(ckpt)
    assert loaded.description.endswith("search_transfer=lean; relevance_kernel=torch")
    assert isinstance(loaded.generator.search_transfer, LeanSearchTransfer)
    assert loaded.generator.search_transfer.relevance_kernel == "torch"
    lr, ref = pair
    with pytest.raises(ConfigError, match="search_transfer: expected one of .*, got 'fast'"):
        infer(compose_infer([f"lr={lr}", f"ref={ref}", f"out={tmp_path / 'sr.png'}", "search_transfer=fast"]))
    with pytest.raises(
        ConfigError, match=r"relevance_kernel: expected one of \['torch', 'triton'\], got 'cuda'"
    ):
        infer(
            compose_infer([f"lr={lr}", f"ref={ref}", f"out={tmp_path / 'sr.png'}", "relevance_kernel=cuda"])
        )
    # on the CPU the kernel is never tried: relevance_kernel=triton gives the torch result, with no warning
    inputs = prepare_inputs(Image.open(lr).convert("RGB"), [(Image.open(ref).convert("RGB"), ref)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        on = load_generator(ckpt, relevance_kernel="triton").generator
        sr = to_uint8_image(super_resolve(on, inputs, torch.device("cpu")).sr[0])
    assert on.search_transfer.relevance_kernel == "triton"
    np.testing.assert_array_equal(sr, direct_sr(ckpt, lr, ref))


def test_errors_name_the_file_or_the_argument(tmp_path: Path, pair: tuple[Path, Path], ckpt: Path) -> None:
    lr, ref = pair
    out = tmp_path / "sr.png"

    def run(*overrides: str) -> None:
        infer(compose_infer([f"ckpt={ckpt}", *overrides]))

    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    with pytest.raises(ImageError, match="broken.png: cannot decode image"):
        run(f"lr={broken}", f"ref={ref}", f"out={out}")
    with pytest.raises(
        ImageError, match=r"lr.png, .*ref.png: memory budget 1 MiB too small: the reference\(s\) 68x48 need"
    ):
        run(f"lr={lr}", f"ref={ref}", f"out={out}", "max_memory=1MiB")
    with pytest.raises(ConfigError, match="max_memory: expected auto, null or a size such as 4GiB"):
        run(f"lr={lr}", f"ref={ref}", f"out={out}", "max_memory=lots")
    tiny_ref = tmp_path / "tiny_ref.png"
    photo(0, 0, 3, 8).save(tiny_ref)
    with pytest.raises(ImageError, match="tiny_ref.png: reference is 8x3 px; expected at least 4x4"):
        run(f"lr={lr}", f"ref={tiny_ref}", f"out={out}")
    with pytest.raises(FileNotFoundError, match="lr: no image file or folder at .*missing.png"):
        run(f"lr={tmp_path / 'missing.png'}", f"ref={ref}", f"out={out}")
    with pytest.raises(ValueError, match=r"out: .*sr.txt must end with one of \.png"):
        run(f"lr={lr}", f"ref={ref}", f"out={tmp_path / 'sr.txt'}")
    with pytest.raises(ValueError, match="out: .* would overwrite the LR image"):
        run(f"lr={lr}", f"ref={ref}", f"out={lr}")

    lr_dir = tmp_path / "lr_dir"
    lr_dir.mkdir()
    photo(0, 0, 8, 8).save(lr_dir / "x.png")
    with pytest.raises(
        FileNotFoundError, match=r"ref: the folder .* has no reference named like the LR image\(s\) x.png"
    ):
        run(f"lr={lr_dir}", f"ref={tmp_path}", f"out={tmp_path / 'o'}")  # holds lr.png, ref.png, no x.*
    with pytest.raises(ValueError, match="out: .* is the lr folder"):
        run(f"lr={lr_dir}", f"ref={ref}", f"out={lr_dir}")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device=cuda: CUDA is not available"):
            run(f"lr={lr}", f"ref={ref}", f"out={out}", "device=cuda")


def test_command_line_writes_only_the_requested_files(
    tmp_path: Path, pair: tuple[Path, Path], ckpt: Path
) -> None:
    lr, ref = pair
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ttsr_lightning.infer",
            f"lr={lr}",
            f"ref={ref}",
            "out=sr.png",
            f"ckpt={ckpt}",
        ],
        cwd=work_dir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "generator file (ttsr-lightning/generator v2)" in result.stdout + result.stderr
    assert sorted(path.name for path in work_dir.iterdir()) == ["sr.png"]  # no outputs/, .hydra/ or log file
    assert Image.open(work_dir / "sr.png").size == (92, 68)


def test_several_references_are_searched_at_once(tmp_path: Path, pair: tuple[Path, Path], ckpt: Path) -> None:
    """ref=[a,b]: one multi-reference forward (the generator's list input), with its attention picture;
    a folder with a subfolder named like the LR gives the same."""
    lr, ref = pair
    other = tmp_path / "other.png"
    photo(200, 300, 36, 44, "coffee").save(other)
    out = tmp_path / "sr.png"
    written = infer(
        compose_infer(
            [f"lr={lr}", f"ref=[{ref},{other}]", f"out={out}", f"ckpt={ckpt}", "save_attention=true"]
        )
    )
    assert written == [out, tmp_path / "sr_attention.png"]
    generator = load_generator(ckpt).generator
    references = [(Image.open(path).convert("RGB"), path) for path in (ref, other)]
    inputs = prepare_inputs(Image.open(lr).convert("RGB"), references)
    assert isinstance(inputs.ref, list) and [tuple(t.shape) for t in inputs.ref] == [
        (1, 3, 48, 68),
        (1, 3, 36, 44),
    ]
    expected = to_uint8_image(super_resolve(generator, inputs, torch.device("cpu")).sr[0])
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)
    attention = Image.open(tmp_path / "sr_attention.png")
    assert attention.height == 68 and attention.width > 3 * 92

    folder = tmp_path / "refs"
    (folder / "lr").mkdir(parents=True)
    for path in (ref, other):
        Image.open(path).save(folder / "lr" / path.name)
    infer(compose_infer([f"lr={lr}", f"ref={folder}", f"out={tmp_path / 'sr2.png'}", f"ckpt={ckpt}"]))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "sr2.png")), expected)


def test_a_killed_writers_leftover_in_the_out_folder_is_removed_at_the_start(
    tmp_path: Path, pair: tuple[Path, Path], ckpt: Path
) -> None:
    lr, ref = pair
    leftover = killed_writers_leftover(tmp_path / "out", "lr.png")
    assert infer(compose_infer([f"lr={lr}", f"ref={ref}", f"out={tmp_path / 'out'}", f"ckpt={ckpt}"])) == [
        tmp_path / "out" / "lr.png"
    ]
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["lr.png"]
    assert not leftover.exists()


def test_halo_is_the_context_of_the_tiles_the_plan_makes_and_a_bad_one_is_refused(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An LR of 160x36 px under a budget that makes it run in tiles: the logged plan has halo=5."""
    lr, ref = tmp_path / "lr.png", tmp_path / "ref.png"
    photo(200, 100, 36, 160).save(lr)
    photo(50, 50, 40, 60, "coffee").save(ref)
    generator = load_generator(ckpt).generator
    budget = plan_forward(generator, (36, 160), [(40, 60)], None).estimated_bytes
    while not plan_forward(generator, (36, 160), [(40, 60)], budget, halo=5).tiled:
        budget = budget * 3 // 4
    common = [f"lr={lr}", f"ref={ref}", f"ckpt={ckpt}", f"out={tmp_path / 'sr.png'}", f"max_memory={budget}"]
    assert compose_infer(common).halo == DEFAULT_HALO  # the documented default is the plan's
    with caplog.at_level(logging.INFO, logger="ttsr_lightning.infer"):
        infer(compose_infer([*common, "halo=5"]))
    assert "main-network tiles of" in caplog.text and "with a halo of 5," in caplog.text
    for value in ("-1", "1.5", "abc", "true", "null"):
        with pytest.raises(ConfigError) as error:
            infer(compose_infer([*common, f"halo={value}"]))
        assert str(error.value).startswith("halo: expected an integer >= 0 (LR pixels of context around")
