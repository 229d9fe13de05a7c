"""``python -m ttsr_lightning.data.build``: a build SIGKILLed at any stage leaves no output and, run
again, finishes with the bytes of an uninterrupted build; errors name the option; the README's
commands run as printed and give the README's numbers."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.photo_collection import BAD_FILES, OPTIONS, tree_bytes
from helpers.sigkill import cli_env, run_cli
from ttsr_lightning.config_paths import REPO_ROOT
from ttsr_lightning.data import build, prepare
from ttsr_lightning.data.photo_dataset import BuildResult, work_folder
from ttsr_lightning.errors import ConfigError
from ttsr_lightning.files import RunFolderLock

BUILD = [sys.executable, "-m", "ttsr_lightning.data.build"]


def build_in_a_session_of_its_own(argv: list[str]) -> None:
    """The command in a forked process that leads its own process group (it and its workers die together)."""
    os.setsid()
    build.main(argv)


def wait_for_the_workers_to_die(work: Path) -> None:
    """The killed command's worker processes share its lock on the work folder until they are gone."""
    deadline = time.monotonic() + 30
    while True:
        try:
            RunFolderLock(work).acquire().release()
            return
        except ConfigError:
            assert time.monotonic() < deadline, "the killed build's workers still hold its work folder"
            time.sleep(0.01)


@pytest.mark.parametrize(
    ("stage", "written"),
    [("examine", "features/*.npz"), ("match", "matches/*.json"), ("write", "staging-*/CUFED/*/*/*.png")],
)
def test_a_build_killed_midway_continues_to_the_same_bytes(
    stage: str,
    written: str,
    built_photos: BuildResult,
    photo_collection: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "dataset"
    argv = [str(photo_collection), str(out), *OPTIONS, "--workers", "2"]
    # forked, not started afresh: the same real SIGKILL, without a second import of torch
    killed = multiprocessing.get_context("fork").Process(target=build_in_a_session_of_its_own, args=(argv,))
    killed.start()
    deadline = time.monotonic() + 300
    try:
        while len(list(work_folder(out).glob(written))) < 3:  # three of the stage's files are written
            assert killed.exitcode is None, f"the build ended before the {stage} stage was killed"
            assert time.monotonic() < deadline, f"the {stage} stage did not start"
            time.sleep(0.002)
        assert os.getpgid(killed.pid) == killed.pid  # its own group: the kill reaches no other process
        os.killpg(killed.pid, signal.SIGKILL)  # the command and its worker processes, mid-stage
    finally:
        killed.join()
    assert killed.exitcode == -signal.SIGKILL
    assert not out.exists()
    wait_for_the_workers_to_die(work_folder(out))
    capsys.readouterr()
    assert build.main(argv) == 0
    printed = capsys.readouterr()
    assert f"built {out}: 21 training pairs, 1 test groups" in printed.out
    left_out = [line for line in printed.err.splitlines() if line.startswith("left out: ")]
    assert len(left_out) == 5 and all(
        any(f"left out: {path}: " in line for line in left_out) for path in BAD_FILES
    )
    assert tree_bytes(out) == tree_bytes(built_photos.out)
    assert not work_folder(out).exists()


def test_a_wrong_option_exits_2_naming_it(
    photo_collection: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build.main([str(photo_collection), str(tmp_path / "dataset"), "--patch-size", "30"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == "error: --patch-size must be a positive multiple of 4, got 30\n"
    with pytest.raises(SystemExit) as exited:
        build.main([str(tmp_path / "absent"), str(tmp_path / "dataset")])
    assert exited.value.code == 2
    assert "absent: folder not found; expected a folder of photographs" in capsys.readouterr().err
    assert not (tmp_path / "dataset").exists()


def test_prepare_checks_a_built_tree_against_its_manifest(
    built_photos: BuildResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = built_photos.out
    assert prepare.main(["photos", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"cufed at {out / 'CUFED' / 'train'}: ready" in printed
    assert f"cufed5 at {out / 'CUFED' / 'test' / 'CUFED5'}: ready" in printed
    with pytest.raises(SystemExit) as exited:
        prepare.main(["photos", str(tmp_path)])
    assert exited.value.code == 2
    assert f"{tmp_path / 'manifest.json'}: cannot read it" in capsys.readouterr().err


def readme_section() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    return text[text.index("### Your own photos") :].split("\n## ", 1)[0]


def readme_commands() -> list[str]:
    """The demonstration's shell lines that build and check the dataset, as printed (comments dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", readme_section(), flags=re.DOTALL)
    [block] = [block for block in blocks if "experiments/own_photos.py collection" in block]
    lines = [line.split(" # ")[0].strip() for line in re.sub(r"\\\n\s*", "", block).splitlines()]
    return [
        line for line in lines if line.startswith("python") and "data=" not in line and "report" not in line
    ]


def test_the_readme_shows_the_commands_it_measured() -> None:
    commands = readme_commands()
    assert [shlex.split(command)[1:3] for command in commands] == [
        ["experiments/own_photos.py", "collection"],
        ["-m", "ttsr_lightning.data.build"],
        ["-m", "ttsr_lightning.data.prepare"],
    ]


@pytest.mark.slow
def test_the_readme_commands_run_as_printed_and_give_its_numbers(tmp_path: Path) -> None:
    (tmp_path / "experiments").symlink_to(REPO_ROOT / "experiments")
    outputs = []
    for command in readme_commands():
        argv = shlex.split(command)
        result = subprocess.run(
            [sys.executable, *argv[1:]],
            cwd=tmp_path,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
        outputs.append(result.stdout + result.stderr)
    dataset = tmp_path / shlex.split(readme_commands()[1])[4]
    manifest = json.loads((dataset / "manifest.json").read_text())
    section = readme_section()
    for level, values in manifest["levels"].items():
        assert f"| {level} | {values['mean_matches']:.1f} | {values['min']} | {values['max']} |" in section
    counts = manifest["counts"]
    assert f"{counts['train_pairs']} training pairs, {counts['test_groups']} test groups" in section
    for line in (dataset / "report.txt").read_text().splitlines()[:3]:
        assert line in outputs[1]


@pytest.mark.slow
def test_the_built_dataset_trains_at_the_miniature_scale_and_gives_table4(
    built_photos: BuildResult, tmp_path: Path
) -> None:
    """The miniature study's TTSR-rec (debug=tiny) trains on a built dataset with data=photos, and
    `evaluate +experiment=reference_levels` measures it on every level and the LR as reference."""
    data_dir, run = f"paths.data_dir={built_photos.out}", tmp_path / "run"
    run_cli(
        [
            "+experiment=ttsr_rec",
            "+scale=miniature",
            "data=photos",
            data_dir,
            "debug=tiny",
            f"hydra.run.dir={run}",
        ],
        cwd=tmp_path,
        env=cli_env(),
    )
    assert json.loads((run / "run.json").read_text())["data"] == "photos"
    evaluation = tmp_path / "evaluation"
    evaluate = [
        sys.executable, "-m", "ttsr_lightning.evaluate", "+experiment=reference_levels",
        f"ckpt={run / 'checkpoints' / 'last.ckpt'}", data_dir, f"hydra.run.dir={evaluation}", "logger=none",
        "trainer.enable_progress_bar=false",
    ]  # fmt: skip
    result = subprocess.run(
        evaluate, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sets = [entry["set"] for entry in json.loads((evaluation / "results.json").read_text())["sets"]]
    assert sets == ["CUFED5_L1", "CUFED5_L2", "CUFED5_L3", "CUFED5_L4", "CUFED5_L5", "CUFED5_LR"]
    assert (evaluation / "table.md").is_file()
