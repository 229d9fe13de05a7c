"""The pre-flight: before the first training step (or evaluated image), everything the run will touch is
checked and every problem is reported at once, one line each, exit status 2, no checkpoint written."""

from __future__ import annotations

import os
import re
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from helpers.command_line import error_lines
from helpers.config import compose_config
from helpers.dataset_trees import make_paper_tree
from ttsr_lightning import preflight, pretrained
from ttsr_lightning.__main__ import main as train_main
from ttsr_lightning.errors import PreflightError
from ttsr_lightning.evaluate import main as evaluate_main
from ttsr_lightning.models import patch_search
from ttsr_lightning.preflight import preflight_training

# the paper recipe on a paper-shaped tree, without the ImageNet VGG19 (absent here)
PAPER = ["+experiment=ttsr", "model.generator.vgg_weights=random", "logger=none"]


@pytest.fixture(scope="module")
def paper_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_paper_tree(tmp_path_factory.mktemp("data"), pairs=9)


def run_train(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> tuple[int, list[str]]:
    """``python -m ttsr_lightning <args>`` in this process: (exit status, its ``error:`` lines)."""
    return error_lines(train_main, args, monkeypatch, capsys)


def problems(cfg, output_dir: Path) -> list[str]:
    with pytest.raises(PreflightError) as raised:
        preflight_training(cfg, output_dir)
    return raised.value.problems


def test_a_paper_recipe_with_a_test_set_missing_stops_before_training_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    data_dir = make_paper_tree(tmp_path / "data", pairs=9, skip=("Urban100",))
    run_dir = tmp_path / "run"
    status, lines = run_train(
        [*PAPER, f"paths.data_dir={data_dir}", f"hydra.run.dir={run_dir}"], monkeypatch, capsys
    )
    assert status == 2
    assert lines == [
        f"error: data.test.sets[4] (Urban100): Urban100: {data_dir / 'Urban100'}: folder not found; "
        "expected the Urban100 HR images"
    ]
    assert not (run_dir / "checkpoints").exists()


def test_every_problem_at_once_one_line_each(tmp_path: Path, paper_tree: Path) -> None:
    data_dir = tmp_path / "data"
    make_paper_tree(data_dir, pairs=9, skip=("Sun80", "Manga109"))
    (data_dir / "CUFED" / "test" / "CUFED5" / "001_3.png").write_bytes(b"not a png")
    cfg = compose_config(tmp_path, data_dir, [*PAPER, "trainer.devices=99"], tiny=False)
    found = problems(cfg, tmp_path / "run")
    assert found[0].startswith("trainer.devices=99: 99 training processes on the CPU")
    assert any(line.startswith("data.test.sets[3] (Sun80): Sun80: ") for line in found)
    assert any(line.startswith("data.test.sets[5] (Manga109): Manga109: ") for line in found)
    assert any(
        line.startswith(f"{data_dir / 'CUFED/test/CUFED5/001_3.png'}: cannot decode") for line in found
    )
    assert len(found) == 4, found


def test_the_error_names_the_key_the_user_typed(tmp_path: Path, paper_tree: Path) -> None:
    """``model.discriminator.in_size`` is ``${data.train.patch_size}``: the line names the latter."""
    cfg = compose_config(tmp_path, paper_tree, [*PAPER, "data.train.patch_size=7"], tiny=False)
    assert problems(cfg, tmp_path / "run") == [
        "data.train.patch_size=7 (model.discriminator.in_size): in_size must be a positive multiple of 32 "
        "(five stride-2 convs), got 7"
    ]
    rec_only = ["+experiment=ttsr_rec", *PAPER[1:], "data.train.patch_size=6"]  # no critic
    rec = compose_config(tmp_path, paper_tree, rec_only, tiny=False)
    assert problems(rec, tmp_path / "run") == [
        "data.train.patch_size must be a positive multiple of 4, got 6"
    ]


def test_workers_and_devices_must_fit_the_machine(tmp_path: Path, paper_tree: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    cfg = compose_config(tmp_path, paper_tree, [*PAPER, f"data.train.num_workers={cores + 1}"], tiny=False)
    assert problems(cfg, tmp_path / "run") == [
        f"data.train.num_workers={cores + 1}: more loader processes than this machine's {cores} CPU cores"
    ]
    # the paper configs ask for 8 and 4 workers, or fewer on a machine with fewer cores
    assert cfg.data.test.num_workers == min(4, cores)
    accelerated = compose_config(tmp_path, paper_tree, [*PAPER, "trainer=gpu"], tiny=False)
    if not preflight.torch.cuda.is_available():
        assert problems(accelerated, tmp_path / "run") == [
            "trainer.accelerator=gpu: this machine has no CUDA GPU (trainer=cpu runs on the CPU)"
        ]


def test_the_disk_must_hold_the_checkpoints_the_run_keeps(
    tmp_path: Path, paper_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = compose_config(tmp_path, paper_tree, PAPER, tiny=False)
    findings = preflight_training(cfg, tmp_path / "run")
    # the paper's generator (6,729,603 trainable parameters: MainNet 6,174,275 + LTE 555,328; 6 buffer
    # values, the mean shifts) and critic (17,821,473): fp32 weights and two Adam moments per trainable
    # parameter, and at most 1 MiB of loop state
    values = 6_729_609 + 2 * 6_729_603 + 3 * 17_821_473
    assert findings.checkpoint_bytes == 4 * values + 2**20  # 281.9 MiB
    assert findings.checkpoint_disk_bytes == 3 * findings.checkpoint_bytes  # last, best, one being written
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: Usage(10**12, 0, 100 * 2**20))
    [line] = problems(cfg, tmp_path / "run")
    assert line.startswith(f"hydra.run.dir={tmp_path / 'run'}: 100.0 MiB free; the run's checkpoints need ~8")


def test_weights_the_config_asks_for_must_be_there(
    tmp_path: Path, paper_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args, download: bool = False, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if download:
            raise RuntimeError("could not download the VGG19 ImageNet weights from https://... (offline)")
        return None

    monkeypatch.setattr(preflight, "find_weights_file", offline)
    cfg = compose_config(tmp_path, paper_tree, ["+experiment=ttsr", "logger=none"], tiny=False)
    assert problems(cfg, tmp_path / "run") == [
        "model.generator.vgg_weights=imagenet: could not download the VGG19 ImageNet weights from "
        "https://... (offline)"
    ]
    auto = compose_config(
        tmp_path,
        paper_tree,
        ["+experiment=ttsr", "logger=none", "model.generator.vgg_weights=auto"],
        tiny=False,
    )
    assert any("the VGG19 starts RANDOM" in note for note in preflight_training(auto, tmp_path / "run").notes)


def test_every_image_is_decoded_and_sized(tmp_path: Path) -> None:
    data_dir = make_paper_tree(tmp_path / "data", pairs=9)
    small = data_dir / "CUFED" / "train" / "input" / "000003.png"
    from PIL import Image

    Image.new("RGB", (100, 160)).save(small)
    cfg = compose_config(tmp_path, data_dir, PAPER, tiny=False)
    assert problems(cfg, tmp_path / "run") == [
        f"{small}: 100x160 px; the HR (the training patch size is 160) must be at least 160x160"
    ]
    with open_dict(cfg):
        cfg.preflight.decode_images = False  # the layout is checked, the images are not
    preflight_training(cfg, tmp_path / "run")


def test_a_compiled_step_that_fails_is_a_problem_before_training(
    tmp_path: Path, sample_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(device, mode):  # noqa: ANN001, ANN202
        raise RuntimeError("InductorError: no working C++ compiler")

    monkeypatch.setattr(preflight, "compile_step_check", broken)
    cfg = compose_config(tmp_path, sample_data_dir, ["system.compile=true"])
    assert problems(cfg, tmp_path / "run") == [
        "system.compile=true (compile_mode=default): one compiled step on cpu failed: "
        "RuntimeError: InductorError: no working C++ compiler"
    ]


def test_a_subset_of_a_released_dataset_gets_a_note_not_an_error(tmp_path: Path, paper_tree: Path) -> None:
    cfg = compose_config(tmp_path, paper_tree, PAPER, tiny=False)
    findings = preflight_training(cfg, tmp_path / "run")
    assert (
        "CUFED: 9 pairs; the released set has 11,871 (a subset, or an incomplete download?)" in findings.notes
    )
    assert findings.set_sizes == {
        "CUFED train": 9,
        "CUFED5_L1": 3,
        "CUFED5_stitched": 3,
        "CUFED5_all5": 3,
        "Sun80": 3,
        "Urban100": 3,
        "Manga109": 3,
    }


def test_the_triton_kernel_is_tried_on_a_small_search_against_the_torch_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a GPU the pre-flight runs the kernel once; here the CPU stands in for the GPU."""
    monkeypatch.setattr(patch_search, "_TRITON_DEVICE_TYPES", ("cpu",))
    monkeypatch.setattr(patch_search, "_triton_failure", None)
    monkeypatch.setattr(patch_search, "_triton_kernel", lambda: patch_search.relevance_max)
    assert preflight.relevance_kernel_check(torch.device("cpu")) is None  # a kernel equal to the torch passes

    def wrong(pixel_dots, key_scale, tile_size, ref_size):  # noqa: ANN001, ANN202
        best, index = patch_search.relevance_max(pixel_dots, key_scale, tile_size, ref_size)
        return best * 1.01, index

    monkeypatch.setattr(patch_search, "_triton_kernel", lambda: wrong)
    assert preflight.relevance_kernel_check(torch.device("cpu")).startswith(
        "differs from the torch passes (relevance by up to"
    )

    def broken():  # noqa: ANN202
        raise ImportError("no module named triton")

    monkeypatch.setattr(patch_search, "_triton_kernel", broken)
    assert preflight.relevance_kernel_check(torch.device("cpu")) == (
        "relevance_kernel='triton': the Triton relevance kernel failed (ImportError: no module named triton)"
    )


def test_evaluate_checks_its_checkpoint_and_sets_before_any_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    data_dir = make_paper_tree(tmp_path / "data", pairs=1, skip=("Sun80",))
    args = [
        "ckpt=/nowhere/TTSR-rec.pt",
        "data=paper",
        "sets=[CUFED5_L1,Sun80]",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "logger=none",
    ]
    status, lines = error_lines(evaluate_main, args, monkeypatch, capsys)
    assert status == 2
    assert lines[0].startswith("error: ckpt=/nowhere/TTSR-rec.pt: no file there; expected ")
    assert lines[1] == (
        f"error: data.test.sets[1] (Sun80): Sun80: {data_dir / 'Sun80'}: folder not found; "
        "expected the Sun80 folder holding Sun_Hays_SR_groundtruth/ and Sun_Hays_SR_scenematches/"
    )
    assert len(lines) == 2


def test_the_readme_example_prints_what_the_readme_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The README's pre-flight example, typed as it is in a folder whose data/ lacks Urban100, on a
    2-core machine with no network (``…`` in the README: what depends on the machine)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("$ python -m ttsr_lightning +experiment=ttsr data.train.patch_size=7", 1)[1]
    command = "+experiment=ttsr data.train.patch_size=7" + block.split("\n", 1)[0]
    shown = [line for line in block.split("```", 1)[0].splitlines() if line.startswith("error: ")]
    make_paper_tree(tmp_path / "data", pairs=9, skip=("Urban100",))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(preflight, "available_cores", lambda: 2)

    def offline(url: str, destination: str, progress: bool = True) -> None:
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(pretrained, "download_url_to_file", offline)
    status, lines = run_train(command.split(), monkeypatch, capsys)
    assert status == 2 and len(lines) == len(shown) == 4
    for printed, expected in zip(lines, shown, strict=True):
        pattern = ".*?".join(re.escape(part) for part in expected.split("…"))
        assert re.fullmatch(pattern, printed), (printed, expected)
