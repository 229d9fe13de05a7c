"""Installable anywhere: a wheel built from this repository, installed into a fresh virtualenv, works
with no clone in sight: its console scripts answer --help, compose their configs (shipped inside the
package) and run one tiny command each, from a folder outside the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = (
    "ttsr-train", "ttsr-evaluate", "ttsr-infer", "ttsr-score", "ttsr-convert", "ttsr-prepare", "ttsr-build"
)  # fmt: skip
# conf/debug/tiny.yaml, one epoch of one batch
TINY = ["debug=tiny", "trainer.max_epochs=1", "optim.warmup_epochs=0", "trainer.limit_train_batches=1"]


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed (rc {result.returncode}):\n{output[-3000:]}"
    return output


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A virtualenv holding only the wheel; its dependencies come from this interpreter's site-packages
    as a plain path (no .pth there runs, so the editable install of this clone stays out of reach)."""
    root = tmp_path_factory.mktemp("install")
    # built from a copy of what the wheel is made of: setuptools leaves a build/ folder beside the
    # sources, whose stale files a later build of the clone would ship
    source = root / "source"
    for name in ("pyproject.toml", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, source / name)
    shutil.copytree(
        REPO_ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    _run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "-w", str(root / "dist")],
        cwd=root, env=dict(os.environ), timeout=600,
    )  # fmt: skip
    [wheel] = (root / "dist").glob("ttsr_lightning-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root, env=dict(os.environ))
    python = venv / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        cwd=root, env=dict(os.environ),
    )  # fmt: skip
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], root, {}))
    (Path(site.as_posix().strip()) / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(root),
        "WANDB_MODE": "disabled",
        "TORCH_HOME": os.environ.get("TORCH_HOME", str(root / "torch")),
    }
    work = root / "work"
    work.mkdir()
    return work, env


@pytest.mark.slow
def test_the_wheel_holds_its_configs_and_every_console_script_runs(installed: tuple[Path, dict]) -> None:
    work, env = installed
    where = _run(["python", "-c", "import ttsr_lightning.config_paths as c; print(c.CONFIG_DIR)"], work, env)
    assert "site-packages" in where and str(REPO_ROOT) not in where
    for script in SCRIPTS:
        helped = _run([script, "--help"], work, env).lower()
        assert "usage" in helped or "configuration groups" in helped, script  # argparse's or Hydra's
    job = _run(["ttsr-train", "--cfg", "job", "+experiment=ablation_csfi"], work, env)
    assert "use_hard_attention: true" in job and "csfi: true" in job

    # one tiny command each: train (on the sample set it builds), convert, evaluate, infer, score, prepare
    _run(["ttsr-train", "name=wheel", "hydra.run.dir=run", *TINY], work, env)
    run = work / "run"
    summary = json.loads((run / "run.json").read_text())
    assert (
        summary["git_commit"].startswith("unknown (ttsr-lightning ") and "installed" in summary["git_commit"]
    )
    _run(["ttsr-convert", str(run / "checkpoints" / "last.ckpt"), "generator.ckpt"], work, env)
    evaluated = _run(
        ["ttsr-evaluate", "ckpt=generator.ckpt", "data=sample", "sets=[CUFED5_L1]",
         "hydra.run.dir=evaluation", "logger=none", "trainer.enable_progress_bar=false"],
        work, env,
    )  # fmt: skip
    assert "CUFED5_L1" in evaluated
    group = work / "data" / "sample" / "CUFED" / "test" / "CUFED5"
    hr = sorted(group.glob("*_0.png"))[0]
    ref = hr.with_name(hr.name.replace("_0.png", "_1.png"))
    with Image.open(hr) as image:
        size = (image.width // 4 * 4, image.height // 4 * 4)
        image.crop((0, 0, *size)).save(work / "hr.png")
        image.crop((0, 0, *size)).resize((size[0] // 4, size[1] // 4), Image.Resampling.BICUBIC).save(
            work / "lr.png"
        )
    _run(["ttsr-infer", "lr=lr.png", f"ref={ref}", "out=sr.png", "ckpt=generator.ckpt"], work, env)
    with Image.open(work / "sr.png") as sr:
        assert sr.size == size
        (work / "sr").mkdir()
        sr.save(work / "sr" / "a.png")
    (work / "hr").mkdir()
    (work / "hr.png").rename(work / "hr" / "a.png")
    _run(["ttsr-score", "sr=sr", "hr=hr", "out=scores.csv", "lpips=false"], work, env)
    assert (work / "scores.csv").read_text().count("\n") == 2
    _run(["ttsr-prepare", "--help"], work, env)
