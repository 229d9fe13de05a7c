"""The miniature study's report: runs found by model and seed, means and spreads, the paper's orderings."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers.file_faults import fill_disk_after
from ttsr_lightning import files
from ttsr_lightning.config_paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "experiments"))
import miniature  # noqa: E402

LEVEL_PSNR = {"L1": 30.0, "L2": 29.6, "L3": 29.5, "L4": 29.45, "L5": 29.4, "LR": 29.3}
MODEL_PSNR = {
    "ablation_base": 29.0,
    "ablation_ha": 29.2,
    "ablation_ha_sa": 29.1,  # soft attention does not help in this made-up study
    "ablation_tt": 29.5,
    "ttsr_rec": 30.0,
    "ttsr": 29.8,
}


def write_run(root: Path, name: str, seed: int, psnr_l1: float, study: str | None = "miniature") -> None:
    folder = root / f"{name}_{seed}"
    folder.mkdir(parents=True)
    metrics = {}
    for level, level_psnr in LEVEL_PSNR.items():
        offset = level_psnr - LEVEL_PSNR["L1"] if name == "ttsr_rec" else 0.0
        metrics[f"test/CUFED5_{level}/psnr"] = psnr_l1 + offset + 0.02 * seed
        metrics[f"test/CUFED5_{level}/ssim"] = 0.8 + 0.001 * seed
        metrics[f"test/CUFED5_{level}/psnr_bicubic"] = 28.5
        metrics[f"test/CUFED5_{level}/lpips"] = 0.2 if name == "ttsr" else 0.3
    summary = {
        "name": name,
        "trains": name,
        "seed": seed,
        "study": study,
        "metrics": metrics,
        "git_commit": f"c0ffee{seed}",
    }
    (folder / "run.json").write_text(json.dumps(summary))


@pytest.fixture
def study_runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for name, psnr in MODEL_PSNR.items():
        for seed in (0, 1):
            write_run(root, name, seed, psnr)
    write_run(root, "ttsr_rec", 5, 10.0, study=None)  # a paper-scale run in the same folder: not the study's
    return root


def test_the_report_lays_the_study_out_as_the_papers_tables(study_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    markdown = miniature.report(study_runs, out, "python -m ttsr_lightning --multirun ...")
    lines = {line.split("|")[2].strip(): line for line in markdown.splitlines() if line.startswith("| Table")}
    assert "29.01 ± 0.01" in lines["Base"] and "26.34?" in lines["Base"]  # ours (2 seeds) beside the paper
    assert "30.01 ± 0.01" in lines["TTSR-rec, L1"] and "26.99 /" in lines["TTSR-rec, L1"]  # verified: no "?"
    assert "29.31 ± 0.01" in lines["TTSR-rec, LR"]
    for name in ("miniature.md", "miniature.csv", "miniature.png", "orderings.json"):
        assert (out / name).stat().st_size > 0
    assert (out / "miniature.png").stat().st_size > 10_000
    with open(out / "miniature_per_seed.csv") as file:  # every row and seed, with the run's commit
        per_seed = list(csv.DictReader(file))
    assert len(per_seed) == 2 * len(miniature.ROWS)
    base = [row for row in per_seed if row["model"] == "Base"]
    assert [(row["seed"], float(row["psnr"]), row["git_commit"]) for row in base] == [
        ("0", 29.0, "c0ffee0"),
        ("1", 29.02, "c0ffee1"),
    ]


def test_each_ordering_is_judged_on_every_seed(study_runs: Path, tmp_path: Path) -> None:
    miniature.report(study_runs, tmp_path / "report", "command")
    verdicts = {
        check["claim"]: (check["verdict"], check["difference"])
        for check in json.loads((tmp_path / "report" / "orderings.json").read_text())
    }
    assert verdicts["Table 2: hard attention helps"][0] == "holds (every seed)"
    assert verdicts["Table 2: soft attention helps"][0] == "does not hold"
    assert verdicts["Table 2: soft attention helps"][1] == pytest.approx(-0.1)
    assert verdicts["Table 3: CSFI helps"] == ("holds (every seed)", pytest.approx(0.5))
    assert verdicts["Table 4: L1 over LR as reference"] == ("holds (every seed)", pytest.approx(0.7))
    assert verdicts["Losses: reconstruction only has the higher PSNR"][0] == "holds (every seed)"
    # LPIPS: lower is better, so all losses' 0.2 beats reconstruction only's 0.3
    assert verdicts["Losses: all losses have the better (lower) LPIPS"] == (
        "holds (every seed)",
        pytest.approx(0.1),
    )


def test_a_missing_model_is_reported_not_guessed(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_run(root, "ablation_base", 0, 29.0)
    markdown = miniature.report(root, tmp_path / "report", "command")
    assert "| Table 3 | Base+TT+CSFI | CUFED5_L1 | – |" in markdown
    checks = json.loads((tmp_path / "report" / "orderings.json").read_text())
    assert {check["verdict"] for check in checks} == {"not measured"}


def test_the_sweep_is_the_papers_experiments_at_the_miniature_scale() -> None:
    command = miniature.sweep_command((0, 1), Path("/tmp/runs"), ["trainer.max_epochs=1"])
    assert command[1:5] == [
        "-m",
        "ttsr_lightning",
        "--multirun",
        f"+experiment={','.join(miniature.EXPERIMENTS)}",
    ]
    assert command.index("+scale=miniature") > command.index("--multirun") + 1  # after +experiment
    assert "seed=0,1" in command and command[-1] == "trainer.max_epochs=1"


def test_every_output_is_written_atomically_and_a_full_disk_keeps_the_previous_report(
    study_runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "report"
    through_atomic_write = []
    atomic_write = files.atomic_write

    def recorded(path: Path, write: Any) -> None:
        through_atomic_write.append(path)
        atomic_write(path, write)

    monkeypatch.setattr(files, "atomic_write", recorded)
    miniature.report(study_runs, out, "command")
    names = ("miniature.md", "miniature.csv", "miniature_per_seed.csv", "orderings.json", "miniature.png")
    outputs = [out / name for name in names]
    assert through_atomic_write == outputs
    before = {path: path.read_bytes() for path in outputs}
    write_run(study_runs, "ablation_base", 2, 31.0)  # a third seed: every output would change
    fill_disk_after(monkeypatch, room=0)
    with pytest.raises(OSError, match="No space left on device") as error:
        miniature.report(study_runs, out, "command")
    assert error.value.filename == str(out / "miniature.md")
    assert {path: path.read_bytes() for path in outputs} == before
    assert sorted(path.name for path in out.iterdir()) == sorted(path.name for path in outputs)
