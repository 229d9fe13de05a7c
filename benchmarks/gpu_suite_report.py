"""The results of gpu_suite.py as Markdown tables, and the training recipe projected from them."""

from __future__ import annotations

import math
from typing import Any

# The TTSR recipe (paper, official train.sh): 11,871 CUFED pairs, batch 9, 2 warm-up + 50 epochs.
CUFED_PAIRS = 11_871
RECIPE_BATCH = 9
TTSR_EPOCHS = (2, 50)  # (reconstruction-only warm-up, all losses)
TTSR_REC_EPOCHS = 200
# the official code's TTSR recipe on one V100, as a third-party analysis of it reports
OFFICIAL_V100_HOURS = 10.0


def outcome_counts(tests: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for test in tests:
        counts[test["outcome"]] = counts.get(test["outcome"], 0) + 1
    return ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items())) or "no tests"


# ------------------------------------------------------------------------------- projection
def _case(phases: dict[str, Any], phase: str, name: str) -> dict[str, Any] | None:
    for case in phases.get(phase, {}).get("cases", []):
        if case["name"] == name and case.get("status") == "ok":
            return dict(case)
    return None


def project_recipe(phases: dict[str, Any]) -> dict[str, Any]:
    """Hours of the TTSR and TTSR-rec recipes from the measured warm-up and all-losses steps."""
    steps_per_epoch = math.ceil(CUFED_PAIRS / RECIPE_BATCH)
    full_cases = [
        case
        for case in phases.get("train_step", {}).get("cases", [])
        if case.get("status") == "ok" and "warm-up" not in case["name"]
    ]
    fastest = max(full_cases, key=lambda case: case["samples_per_second"], default=None)
    # the warm-up step is measured for fp32 eager and the option combinations only: the fastest
    fastest_warmup = min(
        filter(
            None,
            [
                _case(phases, "train_step", f"{name}, warm-up step")
                for name in ("fp32 eager", "all eager options", "all of the above")
            ],
        ),
        key=lambda case: case["step_seconds"],
        default=None,
    )
    fastest_label = "ours, fastest measured"
    if fastest and fastest_warmup:
        fastest_label += f" ({fastest['name']}; warm-up step: {fastest_warmup['name'].split(',')[0]})"
    candidates = [
        ("ours, fp32 eager", _case(phases, "train_step", "fp32 eager, warm-up step"),
         _case(phases, "train_step", "fp32 eager")),
        ("ours, all eager options", _case(phases, "train_step", "all eager options, warm-up step"),
         _case(phases, "train_step", "all eager options")),
        ("ours, all speed options", _case(phases, "train_step", "all of the above, warm-up step"),
         _case(phases, "train_step", "all of the above")),
        (fastest_label, fastest_warmup, fastest),
        ("official code", _case(phases, "official", "official train step, warm-up step"),
         _case(phases, "official", "official train step")),
    ]  # fmt: skip
    rows = []
    for label, warmup_step, full_step in candidates:
        row: dict[str, Any] = {"setting": label}
        if warmup_step is None or full_step is None:
            row["missing"] = "a warm-up or all-losses step was not measured"
        else:
            warm, full = warmup_step["step_seconds"], full_step["step_seconds"]
            row.update(
                warmup_step_seconds=warm,
                full_step_seconds=full,
                ttsr_hours=steps_per_epoch * (TTSR_EPOCHS[0] * warm + TTSR_EPOCHS[1] * full) / 3600,
                ttsr_rec_hours=steps_per_epoch * TTSR_REC_EPOCHS * warm / 3600,
            )
        rows.append(row)
    return {
        "steps_per_epoch": steps_per_epoch,
        "recipe": (
            f"TTSR: {TTSR_EPOCHS[0]} warm-up + {TTSR_EPOCHS[1]} epochs; TTSR-rec: {TTSR_REC_EPOCHS} epochs"
        ),
        "reference": (
            f"~{OFFICIAL_V100_HOURS:.0f} h for the official TTSR recipe on a V100 (a third-party report)"
        ),
        "excludes": "data loading, validation every 10 epochs, checkpoint writing",
        "rows": rows,
    }


# ---------------------------------------------------------------------------------- summary
def _gib(value: Any) -> str:
    return "-" if value is None else f"{value / 2**30:.2f} GiB"


def _ratio(numerator: Any, denominator: Any) -> str:
    return "-" if not numerator or not denominator else f"{numerator / denominator:.2f}x"


def _outcome(case: dict[str, Any] | None, value: str) -> str:
    if case is None:
        return "-"
    if case.get("status") != "ok":
        return f"{case.get('status')}: {case.get('reason') or case.get('error', '')}"[:80]
    return value


def summary_markdown(results: dict[str, Any]) -> str:
    """The tables of every phase (what the suite prints last)."""
    suite, phases = results["suite"], results["phases"]
    title = (
        "GPU suite DRY RUN (CPU, tiny sizes: the numbers mean nothing)" if suite["dry_run"] else "GPU suite"
    )
    lines = [
        f"# {title}",
        "",
        f"{suite['started']}, {suite.get('seconds', 0):.0f} s of {suite['budget_s']} s",
        "",
    ]
    lines += ["| phase | status | seconds |", "|---|---|---|"]
    for name, phase in phases.items():
        status = phase.get("status", "?") + (f" ({phase['reason']})" if phase.get("reason") else "")
        lines.append(f"| {name} | {status} | {phase.get('seconds', 0):.0f} |")
    lines += _environment_lines(phases.get("environment"))
    lines += _tests_lines(phases.get("gpu_tests"))
    lines += _train_lines(phases)
    lines += _search_lines(phases)
    lines += _inference_lines(phases)
    lines += _projection_lines(phases.get("projection"))
    return "\n".join(lines) + "\n"


def _environment_lines(phase: dict[str, Any] | None) -> list[str]:
    if not phase or not phase.get("cases") or phase["cases"][0].get("status") != "ok":
        return []
    env = phase["cases"][0]
    lines = [
        "",
        "## Environment",
        f"{env['machine']}; CUDA {env['torch_cuda']}; free {_gib(env.get('free_bytes'))}",
        f"packages: {', '.join(f'{k} {v}' for k, v in env['packages'].items())}",
    ]
    if "copy_bytes_per_second" not in env:
        return [*lines, "no CUDA device: nothing measured"]
    rates = ", ".join(
        f"{name} {rate / 1e12:.1f} TFLOP/s" for name, rate in env["matmul_flops_per_second"].items()
    )
    return [*lines, f"copy {env['copy_bytes_per_second'] / 1e12:.2f} TB/s (read + write); matmul {rates}"]


def _tests_lines(phase: dict[str, Any] | None) -> list[str]:
    if not phase or "tests" not in phase:
        return []
    lines = ["", "## GPU tests", outcome_counts(phase["tests"]), ""]
    lines += [f"- {t['outcome']}: {t['test']} {_last_line(t['message'])}".rstrip() for t in phase["tests"]]
    return lines


def _last_line(message: str) -> str:
    """A failure's last line (the assertion's message), shortened."""
    lines = message.strip().splitlines()
    return lines[-1][:160] if lines else ""


def _train_lines(phases: dict[str, Any]) -> list[str]:
    cases = phases.get("train_step", {}).get("cases", [])
    official = [
        c for c in phases.get("official", {}).get("cases", []) if c["name"].startswith("official train")
    ]
    if not cases and not official:
        return []
    base = _case(phases, "train_step", "fp32 eager")
    base_speed = base and base["samples_per_second"]
    base_peak = base and base["peak_bytes"]
    lines = [
        "",
        "## Training step (batch, LR size and model of the sizes above; median step)",
        "| option set | step | samples/s | vs fp32 eager | peak memory | memory vs fp32 eager "
        "| warm-up (compile) | graphs compiled while timed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in [*cases, *official]:
        if case.get("status") != "ok":
            lines.append(f"| {case['name']} | {_outcome(case, '')} | | | | | | |")
            continue
        warmup = case.get("warmup_seconds")
        lines.append(
            f"| {case['name']} | {case['step_seconds'] * 1000:.1f} ms | {case['samples_per_second']:.2f} | "
            f"{_ratio(case['samples_per_second'], base_speed)} | {_gib(case['peak_bytes'])} | "
            f"{_ratio(case['peak_bytes'], base_peak)} | {'-' if warmup is None else f'{warmup:.1f} s'} "
            f"| {case.get('graphs_compiled_while_timed', '-')} |"
        )
    return lines


# search-transfer implementations, as the search phase names its cases ("<implementation> <size>")
SEARCH_COLUMNS = ("lean", "tiled", "tiled, torch passes", "direct", "straightforward")


def _search_lines(phases: dict[str, Any]) -> list[str]:
    cases = phases.get("search_transfer", {}).get("cases", [])
    if not cases:
        return []
    env = (phases.get("environment", {}).get("cases") or [{}])[0]
    rate = env.get("matmul_flops_per_second", {}).get("fp32")
    columns = [name for name in SEARCH_COLUMNS if any(c["name"].rsplit(" ", 1)[0] == name for c in cases)]
    lines = [
        "",
        "## Search-transfer (forward, same-size reference; floor = relevance FLOPs / fp32 matmul rate)",
        "lean: as the model runs it (straightforward below its size threshold); tiled: the chunked path "
        "(the fused Triton pass on CUDA); direct: the straightforward path inside the lean module",
        f"| LR | {' | '.join(columns)} | lean peak | floor lean / straightforward | lean / lean floor |",
        f"|---|{'---|' * len(columns)}---|---|---|",
    ]
    for size in dict.fromkeys(case["name"].split()[-1] for case in cases):
        found = {name: _case_any(cases, f"{name} {size}") for name in columns}
        lean = found.get("lean")
        positions = next((case.get("positions") for case in found.values() if case), None)
        batch = next((case.get("batch", 1) for case in found.values() if case), 1)
        floor, to_floor = "-", "-"
        if rate and positions:
            # relevance FLOPs: 256-channel pixel products (lean), 2304-long unfolded patches (straightforward)
            floors = [2 * length * batch * positions**2 / rate for length in (256, 2304)]
            floor = f"{floors[0] * 1000:.2f} / {floors[1] * 1000:.2f} ms"
            to_floor = _ratio(_ok(lean, "seconds"), floors[0])
        cells = [size, *(_outcome(case, _ms(case)) for case in found.values())]
        cells += [_outcome(lean, _gib(_ok(lean, "peak_bytes"))), floor, to_floor]
        lines.append(f"| {' | '.join(cells)} |")
    return lines


def _inference_lines(phases: dict[str, Any]) -> list[str]:
    cases = phases.get("inference", {}).get("cases", [])
    official = [
        case
        for case in phases.get("official", {}).get("cases", [])
        if not case["name"].startswith("official train")
    ]
    if not cases and not official:
        return []
    lines = [
        "",
        "## Inference (generator, no grad, same-size reference; time, peak)",
        "| HR | lean | straightforward | official code |",
        "|---|---|---|---|",
    ]
    for size in dict.fromkeys(case["name"].split()[-1] for case in [*cases, *official]):
        cells = []
        for case in (_case_any(cases, f"lean {size}"), _case_any(cases, f"straightforward {size}"),
                     _case_any(official, f"official {size}")):  # fmt: skip
            cells.append(_outcome(case, f"{_ms(case)}, {_gib(_ok(case, 'peak_bytes'))}"))
        lines.append(f"| {size} | {' | '.join(cells)} |")
    for case in cases:
        if case["name"].startswith("budgeted "):
            budget = case.get("budget_bytes")
            detail = f"{_ms(case)}, peak {_gib(_ok(case, 'peak_bytes'))}; {case.get('plan', '')}"
            lines.append(
                f"\n`infer`'s path at {case['name'].split()[-1]} with max_memory={_gib(budget)}: "
                f"{_outcome(case, detail)}"
            )
    return lines


def _projection_lines(phase: dict[str, Any] | None) -> list[str]:
    if not phase or "rows" not in phase:
        return []
    lines = [
        "",
        f"## Projection ({phase['recipe']}; {phase['steps_per_epoch']} steps per epoch; excludes "
        f"{phase['excludes']}); reference: {phase['reference']}",
        "| setting | warm-up step | all-losses step | TTSR | TTSR-rec |",
        "|---|---|---|---|---|",
    ]
    for row in phase["rows"]:
        if "missing" in row:
            lines.append(f"| {row['setting']} | {row['missing']} | | | |")
            continue
        lines.append(
            f"| {row['setting']} | {row['warmup_step_seconds'] * 1000:.1f} ms | "
            f"{row['full_step_seconds'] * 1000:.1f} ms | {row['ttsr_hours']:.1f} h | "
            f"{row['ttsr_rec_hours']:.1f} h |"
        )
    return lines


def _case_any(cases: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((case for case in cases if case["name"] == name), None)


def _ok(case: dict[str, Any] | None, key: str) -> Any:
    return case.get(key) if case and case.get("status") == "ok" else None


def _ms(case: dict[str, Any] | None) -> str:
    value = _ok(case, "seconds")
    return "-" if value is None else f"{value * 1000:.1f} ms"
