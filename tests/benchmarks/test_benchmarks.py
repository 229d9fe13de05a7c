"""Every benchmark script (``make gpu-suite``'s, ``bench``'s, ``bench-memory``'s, ``bench-protocols``'),
each run as a user runs it but with ``--tiny`` (and ``--device cpu`` where it takes one): the same code
paths (fresh case processes, the tables, the ratios, the JSON) on tiny sizes, so a renamed option,
argument or module breaks this test rather than a long run on a GPU. Their numbers mean nothing."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ttsr_lightning.protocols import available_protocols

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO_ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import official_harness  # noqa: E402
import tiling  # noqa: E402
import train_step  # noqa: E402

OFFICIAL_MISSING = official_harness.missing_reason()
RATIO = re.compile(r"\d+\.\dx")


def run_tiny(script: str, out: Path | None, *arguments: str, device: bool = True) -> str:
    """The script's stdout after ``python benchmarks/<script> --tiny --device cpu [--out OUT] ...``
    (``device=False``: without ``--device cpu``, for the scripts that run on the CPU only)."""
    env = dict(os.environ, WANDB_MODE="disabled")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), env.get("PYTHONPATH")]))
    command = [sys.executable, str(BENCHMARKS / script), "--tiny", *(["--device", "cpu"] if device else [])]
    command += arguments
    if out is not None:
        command += ["--out", str(out)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, env=env)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout


def table(stdout: str, header: str) -> dict[str, list[str]]:
    """The rows (first cell -> cells) of the Markdown table whose header line starts with ``header``."""
    lines = stdout.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(header))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells
    return rows


def positive(value: Any, unit: str = "") -> float:
    """A measured value (a number, or a cell such as '3.2 h'), checked finite and positive."""
    number = float(value.removesuffix(unit).replace(",", "")) if isinstance(value, str) else value
    assert isinstance(number, float | int) and math.isfinite(number) and number > 0, value
    return float(number)


def duration(cell: str) -> float:
    """Seconds from a printed time ('1.23 s', '4.5 ms'); rounding may print a tiny one as 0."""
    match = re.fullmatch(r"([\d.,]+) (s|ms)", cell)
    assert match, cell
    value = float(match.group(1).replace(",", "")) / (1000 if match.group(2) == "ms" else 1)
    assert math.isfinite(value) and value >= 0, cell
    return value


def check_environment(record: dict[str, Any]) -> None:
    positive(record["copy_bytes_per_second"])
    assert set(record["matmul_flops_per_second"]) == {"bf16", "fp32", "tf32"}
    for rate in record["matmul_flops_per_second"].values():
        positive(rate)
    assert record["packages"]["torch"] and record["device"] == "cpu"


def test_environment_prints_the_ceilings() -> None:
    stdout = run_tiny("environment.py", None)
    ceilings = re.search(r"copy ([\d.]+) GB/s .* bf16 ([\d.e-]+) TFLOP/s, fp32 ([\d.e-]+) TFLOP/s", stdout)
    assert stdout.startswith("Machine: ") and ceilings, stdout
    for value in ceilings.groups():
        positive(value)


def test_search_transfer_prints_the_comparison_and_the_memory_curve(tmp_path: Path) -> None:
    stdout = run_tiny("search_transfer.py", tmp_path)
    row = table(stdout, "| LR (W x H) | straightforward time")["16x12"]
    duration(row[1]), duration(row[2])
    assert RATIO.fullmatch(row[3]), row
    assert set(table(stdout, "| LR (W x H) | LR positions")) == {"8x6", "16x12"}
    record = json.loads((tmp_path / "search_transfer.json").read_text())
    check_environment(record["environment"])
    assert [(case["implementation"], case["size"]) for case in record["cases"]] == [
        ("lean", "8x6"),
        ("straightforward", "16x12"),
        ("lean", "16x12"),
    ]
    for case in record["cases"]:
        assert case["skipped"] is None and case["peak_bytes"] >= 0, case
        positive(case["seconds"])
    assert (tmp_path / "search_transfer_memory.png").stat().st_size > 0


@pytest.mark.slow  # ~14 s each; the main table's test runs the same script in the fast tier
@pytest.mark.parametrize(
    ("mode", "names"), [("crossover", ("direct", "tiled")), ("fused", ("tiled, torch passes", "tiled"))]
)
def test_search_transfer_times_two_paths_side_by_side(
    tmp_path: Path, mode: str, names: tuple[str, str]
) -> None:
    stdout = run_tiny("search_transfer.py", tmp_path, f"--{mode}")
    rows = table(stdout, f"| LR (WxH, batch) | relevance elements | {names[0]} | {names[1]} |")
    assert len(rows) == 1
    for row in rows.values():
        duration(row[2]), duration(row[3])
        assert RATIO.fullmatch(row[4]), row
    record = json.loads((tmp_path / f"search_transfer_{mode}.json").read_text())
    check_environment(record["environment"])
    assert all(positive(row[name]) for row in record[mode]["rows"] for name in names)
    if mode == "crossover":
        assert "direct wins up to" in stdout and "DIRECT_SEARCH_MAX_ELEMENTS['cpu']" in stdout


def test_inference_prints_lean_straightforward_budgeted_and_official(tmp_path: Path) -> None:
    stdout = run_tiny("inference.py", tmp_path, "--official")
    row = table(stdout, "| HR (W x H) |")["32x24"]
    duration(row[1]), duration(row[2])
    assert RATIO.fullmatch(row[3]) and RATIO.fullmatch(row[6]), row
    assert re.search(r"infer's path at 32x24 with max_memory=.*: [\d.]+ m?s, peak .* LR 8x6", stdout), stdout
    record = json.loads((tmp_path / "inference.json").read_text())
    check_environment(record["environment"])
    cases = {case["implementation"]: case for case in record["cases"]}
    if OFFICIAL_MISSING is None:
        assert RATIO.search(row[-1]) and cases["official"]["skipped"] is None
    else:  # a clone without the official code: the run says why
        assert f"official code not measured: {OFFICIAL_MISSING}" in stdout and "official" not in cases
    for case in cases.values():
        assert case["skipped"] is None, case
        positive(case["seconds"])
    assert "untiled" in cases["budgeted"]["plan"] or "tiles" in cases["budgeted"]["plan"]


def check_train_step(stdout: str, out: Path, cases: list[str]) -> dict[str, Any]:
    rows = table(stdout, "| case | step time")
    for name in cases:
        duration(rows[name][1]), positive(rows[name][2])
        assert RATIO.fullmatch(rows[name][3]), rows[name]
    projection = table(stdout, "| setting | warm-up step")
    assert positive(projection["fp32 eager"][3], " h") > 0 and positive(projection["fp32 eager"][4], " h") > 0
    if OFFICIAL_MISSING is None:
        assert RATIO.fullmatch(rows["fp32 eager"][4]) and "official code" in projection
    else:
        assert OFFICIAL_MISSING in rows["official code"][1]
    record = json.loads((out / "train_step_cpu.json").read_text())
    check_environment(record["environment"])
    for name in cases:
        positive(record["results"][name]["step_seconds"])
        assert record["results"][name]["graphs_compiled_while_timed"] == 0
    return record


def test_train_step_prints_the_steps_the_ratios_and_the_recipe_projection(tmp_path: Path) -> None:
    stdout = run_tiny("train_step.py", tmp_path, "--sets", "fp32 eager", "--official")
    check_train_step(stdout, tmp_path, ["fp32 eager", "fp32 eager, warm-up step"])


@pytest.mark.slow  # ~27 s on 2 busy cores: over 30 s when they are busier
def test_train_step_with_every_speed_option(tmp_path: Path) -> None:
    stdout = run_tiny("train_step.py", tmp_path, "--official")
    check_train_step(stdout, tmp_path, ["fp32 eager", "fp32 eager, warm-up step", "all of the above"])


def test_projection_follows_the_recipe() -> None:
    def step(seconds: float) -> dict[str, Any]:
        return {"step_seconds": seconds, "samples_per_second": 9 / seconds}

    results: dict[str, dict[str, Any] | str] = {
        "fp32 eager": step(0.5),
        "fp32 eager, warm-up step": step(0.1),
        "bf16 autocast": step(0.25),
        "official code": step(0.4),
        "official code, warm-up step": step(0.2),
        "all of the above": "killed (out of memory?)",
    }
    rows = {row["setting"]: row for row in train_step.projection(results)}
    assert train_step.STEPS_PER_EPOCH == 1319  # 11,871 pairs / batch 9
    assert rows["fp32 eager"]["ttsr_hours"] == pytest.approx(1319 * (2 * 0.1 + 50 * 0.5) / 3600)
    assert rows["fp32 eager"]["ttsr_rec_hours"] == pytest.approx(1319 * 200 * 0.1 / 3600)
    assert rows["official code"]["ttsr_hours"] == pytest.approx(1319 * (2 * 0.2 + 50 * 0.4) / 3600)
    fastest = rows["fastest (bf16 autocast; warm-up step: fp32 eager)"]
    assert (fastest["full_step_seconds"], fastest["warmup_step_seconds"]) == (0.25, 0.1)
    assert len(rows) == 3


def test_the_benchmark_losses_are_the_package_loss_config() -> None:
    terms = train_step.paper_losses()["terms"]
    assert {name: term["weight"] for name, term in terms.items()} == {
        "reconstruction": 1.0,
        "adversarial": 1e-3,
        "perceptual": 1e-2,
        "transferal_perceptual": 1e-2,
    }
    assert terms["perceptual"]["vgg_weights"] == "random"


def test_data_loader_prints_the_throughput_of_each_worker_count() -> None:
    stdout = run_tiny("data_loader.py", None, device=False)
    assert "80 samples per epoch, batch 9, 64x64" in stdout, stdout
    rows = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) == 5 and cells[0].isdigit():
            rows[int(cells[0])] = cells
    assert set(rows) == {0, 1}, stdout
    rates = {workers: positive(cells[1]) for workers, cells in rows.items()}
    for workers, (_, _, versus, per_batch, first_epoch) in rows.items():
        assert float(versus.removesuffix("x")) == pytest.approx(rates[workers] / rates[0], abs=0.01)
        assert positive(per_batch) == pytest.approx(1000 * 9 / rates[workers], rel=0.01)
        positive(first_epoch)


@pytest.mark.slow  # ~70 s on 2 busy cores (load ~4): six `evaluate` processes
def test_protocols_prints_the_one_run_against_the_separate_runs() -> None:
    stdout = run_tiny("protocols.py", None, device=False)
    protocols = available_protocols()
    rows = table(stdout, "| run | wall time |")
    positive(rows[f"protocol=all (one generator pass per set, {len(protocols)} protocols scored)"][1], " s")
    for name in protocols:
        positive(rows[f"protocol={name} alone"][1], " s")
    together = rows[f"the {len(protocols)} separate runs together"][1]
    assert re.fullmatch(r"[\d.]+ s \(\d+\.\dx the one run\)", together), together
    largest = re.search(r"largest per-set PSNR difference between .*: (\S+) dB", stdout)
    assert largest and float(largest.group(1)) == 0.0, stdout


def test_tiling_makes_a_tile_exact_at_the_receptive_field(tmp_path: Path) -> None:
    run_tiny("tiling.py", tmp_path, device=False)
    record = json.loads((tmp_path / "tiling.json").read_text())
    networks = {name: value for name, value in record.items() if isinstance(value, dict)}
    assert "tiny network (n_feats 8, 1+1+1+1), random init" in networks, list(record)
    for name, network in networks.items():
        field = network["receptive_field"]
        assert [row["halo"] for row in network["halos"]] == [h for h in tiling.HALOS if h <= field], name
        cut, exact = network["halos"][0], network["halos"][-1]
        assert cut["changed_8bit_pixels"] > 0 and not cut["below_8bit_step"], cut  # no context: seams show
        assert exact["max_abs_deviation"] < 1e-6 and exact["changed_8bit_pixels"] == 0, exact
        assert all(row["probed_pixels"] == (4 * tiling.CORE) ** 2 for row in network["halos"])
        positive(network["whole_seconds"])


def check_whole_forward_case(case: dict[str, Any]) -> None:
    assert "skipped" not in case, case
    positive(case["seconds"]), positive(case["first_seconds"])
    assert case["peak_bytes"] >= 0, case


def test_whole_forward_budget_prints_budgeted_beside_untiled_and_their_difference(tmp_path: Path) -> None:
    stdout = run_tiny("whole_forward.py", tmp_path, "budget", device=False)
    row = table(stdout, "| SR (W x H) | official time | ours time |")["128x96"]
    duration(row[2]), duration(row[7])
    assert re.fullmatch(r"[\d.]+ GiB", row[4]) and re.fullmatch(r"[\d.]+ GiB", row[8]), row
    record = json.loads((tmp_path / "whole_forward_budget.json").read_text())
    cases = {case["implementation"]: case for case in record["cases"]}
    assert set(cases) == {"budgeted", "ours", "budgeted vs ours"} and record["budget_bytes"] == 16 * 2**20
    for name in ("budgeted", "ours"):
        check_whole_forward_case(cases[name])
    assert "(budget 16 MiB)" in cases["budgeted"]["plan"] and "(no budget)" in cases["ours"]["plan"]
    difference = cases["budgeted vs ours"]
    assert difference["lr_positions"] == 32 * 24 and difference["hard_index_disagreements"] == 0, difference
    assert difference["sr_max_abs"] < 1e-5 and difference["sr_8bit_pixels_changed"] == 0, difference


@pytest.mark.slow  # ~38 s on 2 busy cores (load ~4): two runs, four case processes
def test_whole_forward_compare_and_curve(tmp_path: Path) -> None:
    stdout = run_tiny("whole_forward.py", tmp_path, "compare", device=False)
    row = table(stdout, "| SR (W x H) | official time | ours time |")["64x48"]
    duration(row[2])
    assert all(re.fullmatch(r"[\d.]+ GiB", cell) for cell in (row[4], row[5])), row
    cases = {
        case["implementation"]: case
        for case in json.loads((tmp_path / "whole_forward_compare.json").read_text())["cases"]
    }
    check_whole_forward_case(cases["ours"]), check_whole_forward_case(cases["ours_forward"])
    if OFFICIAL_MISSING is None:
        check_whole_forward_case(cases["official"])
        assert RATIO.fullmatch(row[6]), row
        for name in ("ours vs official", "ours_forward vs official"):
            assert cases[name]["sr_max_abs"] < 1e-3, cases[name]
    else:  # a clone without the official code: the run says why
        assert f"official code not measured: {OFFICIAL_MISSING}" in stdout
        assert cases["official"]["skipped"] == "not run: official code not found" == row[1]
    run_tiny("whole_forward.py", tmp_path, "curve", device=False)
    curve = json.loads((tmp_path / "whole_forward_curve.json").read_text())["cases"]
    assert [(case["implementation"], case["size"]) for case in curve[:2]] == [
        ("budgeted", "96x72"),
        ("ours", "96x72"),
    ]
    for case in curve[:2]:
        check_whole_forward_case(case)
    assert (tmp_path / "whole_forward_memory.png").stat().st_size > 0


def test_multi_reference_prints_stitched_beside_native(tmp_path: Path) -> None:
    stdout = run_tiny("multi_reference.py", tmp_path)
    rows = table(stdout, "| | stitched canvas | native list | stitched / native |")
    record = json.loads((tmp_path / "multi_reference.json").read_text())
    sizes, canvas = record["ref_sizes"], record["canvas"]
    stitched_positions = len(sizes) * (canvas // 4) ** 2
    native_positions = sum((width // 4) * (height // 4) for width, height in sizes)
    assert rows["Ref lv3 positions searched"][1:3] == [f"{stitched_positions:,}", f"{native_positions:,}"]
    for label in ("Ref lv3 positions searched", "forward time", "of which search-transfer"):
        assert RATIO.fullmatch(rows[label][3]), rows[label]
    for label in ("forward time", "of which search-transfer"):
        duration(rows[label][1]), duration(rows[label][2])
    assert [case["way"] for case in record["cases"]] == ["stitched", "native"] and record["rounds"] == 1
    for case in record["cases"]:
        assert case["skipped"] is None and case["peak_bytes"] >= 0, case
        assert len(case["round_seconds"]) == 1
        assert 0 < positive(case["search_transfer_seconds"]) < positive(case["seconds"]), case
