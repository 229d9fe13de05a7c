"""Search-transfer benchmark: the straightforward SearchTransfer against LeanSearchTransfer.

    python benchmarks/search_transfer.py                  # CPU: LR 40x40, 125x83, 256x192, and the curve
    python benchmarks/search_transfer.py --device cuda    # adds 480x270 and 960x540 (1080p, 4K outputs)
    python benchmarks/search_transfer.py --sizes 64x48 --curve 32x24 64x48   # a quick look
    python benchmarks/search_transfer.py --threads 1      # every case on one torch thread
    python benchmarks/search_transfer.py --crossover      # where the straightforward path stops winning
    python benchmarks/search_transfer.py --device cuda --fused   # the tiled path with / without Triton
    python benchmarks/search_transfer.py --device cuda --relevance-kernel triton   # the lean path with it
    python benchmarks/search_transfer.py --tiny           # every mode's code path, tiny sizes: seconds

``--crossover [SIZES]`` times, per size (``WxH`` or ``WxHbB`` for batch B), the two paths
LeanSearchTransfer switches between: "direct" (the straightforward formulation, a handful of large
kernels) and "tiled" (the lean chunked search, 9x fewer FLOPs, ~60 small kernels), and reports the
relevance size (B x LR positions x Ref positions) where tiled starts to win: the source of
``lean_search_transfer.DIRECT_SEARCH_MAX_ELEMENTS``. ``--fused [SIZES]`` times the tiled path with
its fused Triton relevance pass (``relevance_kernel="triton"``, CUDA only; "tiled") against its torch
passes ("tiled, torch passes"). Both print a table with the ratio and write
<out>/search_transfer_{crossover,fused}.json. Elsewhere the lean and tiled paths run
``--relevance-kernel`` (default torch, as the model does by default). Where the Triton kernel fails,
a case asked to run it fails too, rather than timing the torch passes under its name.

Inputs: random LTE-like features (post-ReLU; 256/128/64 channels at lv3/lv2/lv1), batch 1, for an
LR image of W x H lv3 positions and a same-size reference (Ref = 4x the LR pixels). Sizes are LR
width x height: 125x83 is a CUFED5 image (500x332 HR), 256x192 an Urban100-like 1024x768 HR image,
320x180 a 720p output, 480x270 a 1080p output.

Every case runs in a fresh Python process (see ``_measure.py``): the time of one forward under
torch.no_grad() after a warm-up on a tiny input (the best of up to five runs where one takes under a
second; at least seven where one takes under two), and its peak memory (CPU: peak RSS growth; GPU:
max_memory_allocated growth), outputs (~7 KiB per LR position) included. A case whose estimated
footprint exceeds the budget is not run: "does not fit".

The floor is the FLOPs of the relevance matmul divided by the device's measured fp32 matmul rate
(``environment.py``, printed first with the copy bandwidth and the other ceilings):
2 * 2304 * N * Nk for the straightforward formulation (unfolded 3x3x256 patches) and 2 * 256 * N * Nk
for the lean one (pixel dot products; its tile borders add ~15 %), N and Nk the LR and Ref positions.

Prints the machine, a Markdown table with the ratios and the lean path's peak memory against image
size; writes <out>/search_transfer.json (every number) and <out>/search_transfer_memory.png
(<out>: outputs/benchmarks by default).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from _measure import (
    STRAIGHTFORWARD_VS_LEAN,
    gib,
    memory_budget,
    parse_arguments,
    ratio,
    run_case,
    run_worker_if_asked,
    seconds,
    timed_peak,
    write_record,
)
from environment import describe, environment

from ttsr_lightning.markdown import markdown_table
from ttsr_lightning.models import lean_search_transfer, patch_search
from ttsr_lightning.models.lean_search_transfer import LeanSearchTransfer
from ttsr_lightning.models.search_transfer import SearchTransfer

CPU_TABLE_SIZES = ["40x40", "125x83", "256x192"]
GPU_TABLE_SIZES = [*CPU_TABLE_SIZES, "480x270", "960x540"]
CPU_CURVE_SIZES = ["40x40", "80x45", "125x83", "160x90", "256x192", "320x180"]
GPU_CURVE_SIZES = [*CPU_CURVE_SIZES, "480x270", "640x360", "960x540"]
# Each built for a relevance kernel (patch_search.RELEVANCE_KERNELS), which the tiled search uses.
IMPLEMENTATIONS: dict[str, Callable[[str], torch.nn.Module]] = {
    "straightforward": lambda kernel: SearchTransfer(),
    # as the model runs it: the straightforward path below its threshold
    "lean": lambda kernel: LeanSearchTransfer(relevance_kernel=kernel),
    "direct": lambda kernel: LeanSearchTransfer(direct_max_elements=2**62),
    "tiled": lambda kernel: LeanSearchTransfer(direct_max_elements=0, relevance_kernel=kernel),
    "tiled, torch passes": lambda kernel: LeanSearchTransfer(direct_max_elements=0),
}
CPU_CROSSOVER_SIZES = ["4x4", "6x6", "8x8", "12x12", "16x16", "24x24", "40x40", "8x8b9", "16x16b9", "40x40b9"]
GPU_CROSSOVER_SIZES = [
    "40x40",
    "48x48",
    "56x56",
    "64x64",
    "72x72",
    "80x80",
    "96x96",
    "125x83",
    "40x40b9",
    "64x64b9",
]
FUSED_SIZES = ["256x192", "480x270"]
TINY = {"sizes": ["16x12"], "curve": ["8x6", "16x12"], "crossover": ["8x8b2"], "fused": ["16x12"]}

_FLOAT_BYTES = 4
_PATCH_LENGTH = 9 * 256  # an unfolded 3x3 lv3 patch
_VALUE_PATCH_LENGTHS = (256 * 9, 128 * 36, 64 * 144)  # unfolded value patches at lv3, lv2, lv1
_OUTPUT_PER_POSITION = 256 + 128 * 4 + 64 * 16  # t_lv3 + t_lv2 + t_lv1 values per LR position
_REPEAT_BELOW_SECONDS = 1.0
_MAX_REPEATS = 5
# short runs are repeated this many times at least (best of): one preemption on a shared box would
# otherwise decide a millisecond case
_SHORT_RUN_SECONDS = 2.0
_SHORT_RUN_REPEATS = 7


@dataclass
class Case:
    """One measured (or skipped) run of one implementation at one LR size."""

    implementation: str
    size: str
    positions: int
    estimated_bytes: int
    seconds: float | None = None
    peak_bytes: int | None = None
    skipped: str | None = None  # why it did not run: "does not fit" or a failure


def parse_size(size: str) -> tuple[int, int]:
    """'125x83' -> (width 125, height 83) in LR (lv3) positions ('125x83b9': the same, batch 9)."""
    return parse_batched_size(size)[:2]


def parse_batched_size(size: str) -> tuple[int, int, int]:
    """'125x83' -> (125, 83, 1); '40x40b9' -> (40, 40, 9): LR width, height, batch."""
    match = re.fullmatch(r"(\d+)x(\d+)(?:b(\d+))?", size)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"size must be WIDTHxHEIGHT in LR pixels, e.g. 125x83, or with a batch, 40x40b9; got {size!r}"
        )
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 1)


def lte_like_features(width: int, height: int, device: str, batch: int = 1) -> tuple[torch.Tensor, ...]:
    """query, key, value lv1, lv2, lv3 for an LR of width x height and a same-size Ref, all >= 0."""
    generator = torch.Generator(device=device).manual_seed(0)

    def relu_noise(channels: int, scale: int) -> torch.Tensor:
        shape = (batch, channels, scale * height, scale * width)
        return torch.randn(shape, generator=generator, device=device).relu_()

    return relu_noise(256, 1), relu_noise(256, 1), relu_noise(64, 4), relu_noise(128, 2), relu_noise(256, 1)


def estimated_bytes(implementation: str, positions: int) -> int:
    """Rough peak footprint for an LR and a Ref of ``positions`` lv3 positions each (batch 1, fp32)."""
    outputs = _OUTPUT_PER_POSITION * positions
    if implementation in ("straightforward", "direct"):
        # relevance + unfolded query/key patches + the lv1 value unfold and its gathered copy.
        return _FLOAT_BYTES * (
            positions * positions
            + 2 * _PATCH_LENGTH * positions
            + 2 * max(_VALUE_PATCH_LENGTHS) * positions
            + outputs
        )
    # one relevance tile (<= 2 GiB on CUDA) + lv1 Ref blocks, one gathered copy and the outputs.
    return 2 * 2**30 + _FLOAT_BYTES * (2 * 64 * 16 * positions + outputs)


def run_worker(implementation: str, size: str, args: argparse.Namespace) -> dict[str, float | int]:
    """Runs one case in this process: seconds (best of the repeats) and peak bytes (first run)."""
    device = args.device
    width, height, batch = parse_batched_size(size)
    module = IMPLEMENTATIONS[implementation](args.relevance_kernel)
    # A Triton kernel that fails falls back to the torch passes: an error here, not a time under its name.
    warnings.simplefilter("error", patch_search.RelevanceKernelFallback)
    with torch.no_grad():
        module(*lte_like_features(8, 6, device))  # warm-up: thread pools, allocator, kernels
        module(*lte_like_features(width, height, device, batch))  # and this size's kernels (Triton's JIT)
        features = lte_like_features(width, height, device, batch)
        elapsed, peak = timed_peak(lambda: module(*features), device)
        timings = [elapsed]
        while (len(timings) < _MAX_REPEATS and sum(timings) < _REPEAT_BELOW_SECONDS) or (
            len(timings) < _SHORT_RUN_REPEATS and min(timings) < _SHORT_RUN_SECONDS
        ):
            timings.append(timed_peak(lambda: module(*features), device)[0])
    return {"seconds": min(timings), "peak_bytes": peak}


def measure(implementation: str, size: str, args: argparse.Namespace, budget_bytes: int) -> Case:
    """One case in a fresh subprocess, or a skipped Case when its estimate exceeds the budget."""
    width, height = parse_size(size)
    case = Case(implementation, size, width * height, estimated_bytes(implementation, width * height))
    if case.estimated_bytes > budget_bytes:
        case.skipped = "does not fit"
        return case
    result = run_case(__file__, args, implementation, size, ["--relevance-kernel", args.relevance_kernel])
    if isinstance(result, str):
        case.skipped = result
    else:
        case.seconds, case.peak_bytes = result["seconds"], int(result["peak_bytes"])
    return case


def _outcome(case: Case, value: str) -> str:
    return case.skipped if case.skipped is not None else value


def comparison_table(cases: dict[tuple[str, str], Case], sizes: list[str], flops_per_second: float) -> str:
    """Markdown: time, peak memory and their ratios per size, with the matmul floors."""
    header = ("LR (W x H)", *STRAIGHTFORWARD_VS_LEAN, "floor straightforward", "floor lean")
    rows = []
    for size in sizes:
        reference, lean = cases["straightforward", size], cases["lean", size]
        positions = lean.positions
        floor_reference = 2 * _PATCH_LENGTH * positions * positions / flops_per_second
        floor_lean = 2 * 256 * positions * positions / flops_per_second
        cells = [
            size,
            _outcome(reference, seconds(reference.seconds)),
            _outcome(lean, seconds(lean.seconds)),
            ratio(reference.seconds, lean.seconds),
            _outcome(reference, gib(reference.peak_bytes)),
            _outcome(lean, gib(lean.peak_bytes)),
            ratio(reference.peak_bytes, lean.peak_bytes),
            f"{floor_reference:.2f} s",
            f"{floor_lean:.2f} s",
        ]
        rows.append(cells)
    return markdown_table(header, rows)


def linear_fit(positions: list[int], peaks: list[int]) -> tuple[float, float]:
    """Least-squares (intercept bytes, bytes per LR position) of peak memory against positions."""
    count = len(positions)
    mean_x, mean_y = sum(positions) / count, sum(peaks) / count
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in zip(positions, peaks, strict=True))
    variance = sum((x - mean_x) ** 2 for x in positions)
    slope = covariance / variance
    return mean_y - slope * mean_x, slope


def _peakgib(case: Case) -> float:
    if case.peak_bytes is None:
        raise ValueError(f"{case.implementation} at {case.size} was not measured ({case.skipped})")
    return case.peak_bytes / 2**30


def curve_table(curve: list[Case], intercept: float, slope: float) -> str:
    """Markdown: the lean path's peak per size, per LR position, and against the linear fit."""
    rows = []
    for case in curve:
        peak_mib = _peakgib(case) * 1024
        fit_mib = (intercept + slope * case.positions) / 2**20
        rows.append(
            (
                case.size,
                case.positions,
                f"{peak_mib:.0f} MiB",
                f"{peak_mib * 1024 / case.positions:.1f}",
                f"{fit_mib:.0f} MiB",
                seconds(case.seconds),
            )
        )
    header = ("LR (W x H)", "LR positions", "lean peak", "KiB per LR position", "linear fit", "time")
    return markdown_table(header, rows)


def plot_curve(curve: list[Case], reference: list[Case], intercept: float, slope: float, path: Path) -> None:
    """Peak memory against LR positions: lean (measured + linear fit), straightforward (measured)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    largest = max(case.positions for case in curve)
    axes.plot([c.positions for c in curve], [_peakgib(c) for c in curve], "o", label="lean, measured")
    axes.plot(
        [0, largest], [intercept / 2**30, (intercept + slope * largest) / 2**30], "-", label="lean, fit"
    )
    measured = [case for case in reference if case.peak_bytes is not None]
    if measured:
        axes.plot(
            [c.positions for c in measured],
            [_peakgib(c) for c in measured],
            "s",
            label="straightforward, measured",
        )
    for case in curve:
        axes.annotate(case.size, (case.positions, _peakgib(case)), fontsize=7)
    axes.set_xlabel("LR positions (W x H), same-size reference")
    axes.set_ylabel("peak memory growth (GiB)")
    axes.set_title("Search-transfer peak memory")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def relevance_elements(size: str) -> int:
    """B x LR positions x Ref positions of a same-size search: what the switch compares."""
    width, height, batch = parse_batched_size(size)
    return batch * (width * height) ** 2


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.2f} ms"


def side_by_side(
    args: argparse.Namespace, sizes: list[str], names: tuple[str, str], relevance_kernel: str
) -> list[dict[str, Any]]:
    """Times two implementations per size (the tiled search with ``relevance_kernel``); prints a table
    with their ratio (second / first)."""
    rows = []
    kernel = ["--relevance-kernel", relevance_kernel]
    for size in sorted(sizes, key=relevance_elements):
        timings = [run_case(__file__, args, name, size, kernel) for name in names]
        first, second = (t["seconds"] if isinstance(t, dict) else None for t in timings)
        rows.append({"size": size, "elements": relevance_elements(size), names[0]: first, names[1]: second})
        print(f"  {size:>9} ({relevance_elements(size):>12,} elements): {names[0]} {_ms(first)}, "
              f"{names[1]} {_ms(second)}", flush=True)  # fmt: skip
    header = ("LR (WxH, batch)", "relevance elements", *names, f"{names[1]} / {names[0]}")
    cells = [
        (r["size"], f"{r['elements']:,}", _ms(r[names[0]]), _ms(r[names[1]]), ratio(r[names[1]], r[names[0]]))
        for r in rows
    ]
    print("\n" + markdown_table(header, cells))
    return rows


def crossover(args: argparse.Namespace, sizes: list[str]) -> dict[str, object]:
    """Times "direct" and "tiled" per size; the relevance sizes bracketing where tiled starts to win."""
    rows = side_by_side(args, sizes, ("direct", "tiled"), args.relevance_kernel)
    timed = [r for r in rows if r["direct"] and r["tiled"]]
    largest_direct_win = max((r["elements"] for r in timed if r["direct"] < r["tiled"]), default=0)
    smallest_tiled_win = min(
        (r["elements"] for r in timed if r["direct"] >= r["tiled"] and r["elements"] > largest_direct_win),
        default=None,
    )
    print(
        f"\ndirect wins up to {largest_direct_win:,} elements; "
        f"tiled from {smallest_tiled_win or 'none measured'}"
        f" (lean_search_transfer.DIRECT_SEARCH_MAX_ELEMENTS[{args.device!r}] = "
        f"{lean_search_transfer.DIRECT_SEARCH_MAX_ELEMENTS.get(args.device)})"
    )
    return {"rows": rows, "largest_direct_win": largest_direct_win, "smallest_tiled_win": smallest_tiled_win}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", help="LR sizes WxH compared side by side")
    parser.add_argument("--curve", nargs="*", help="LR sizes WxH for the lean memory curve")
    parser.add_argument("--crossover", nargs="*", help="only the direct/tiled crossover, at these sizes")
    parser.add_argument(
        "--fused", nargs="*", help="only the tiled path with / without Triton, at these sizes"
    )
    parser.add_argument(
        "--relevance-kernel",
        choices=patch_search.RELEVANCE_KERNELS,
        default="torch",
        help="the lean and tiled search's relevance pass, but in --fused (which times both): torch "
        "(default, as the model runs by default) or triton (CUDA only)",
    )
    args = parse_arguments(parser)
    if run_worker_if_asked(args, run_worker):
        return
    on_gpu = args.device == "cuda"
    # The load average says whether other processes shared the CPU (it skews small, many-op cases most).
    load_at_start = os.getloadavg()[0]
    env = environment(args.device, args.tiny)
    print(f"{describe(env)}\nload average {load_at_start:.1f}", flush=True)
    record: dict[str, Any] = {"environment": env, "command": sys.argv, "load_average": [load_at_start]}
    if args.crossover is not None or args.fused is not None:
        default_crossover = GPU_CROSSOVER_SIZES if on_gpu else CPU_CROSSOVER_SIZES
        for mode, asked, default in (
            ("crossover", args.crossover, default_crossover),
            ("fused", args.fused, FUSED_SIZES),
        ):
            if asked is None:
                continue
            sizes = asked or (TINY[mode] if args.tiny else default)
            for size in sizes:
                parse_batched_size(size)
            print(f"\n## {mode}")
            if mode == "crossover":
                record["crossover"] = crossover(args, sizes)
            else:
                names = ("tiled, torch passes", "tiled")
                record["fused"] = {"rows": side_by_side(args, sizes, names, "triton")}
            write_record(args.out, f"search_transfer_{mode}.json", record)
        return
    sizes = args.sizes or (TINY["sizes"] if args.tiny else GPU_TABLE_SIZES if on_gpu else CPU_TABLE_SIZES)
    default_curve = TINY["curve"] if args.tiny else GPU_CURVE_SIZES if on_gpu else CPU_CURVE_SIZES
    curve_sizes = args.curve if args.curve is not None else default_curve
    for size in [*sizes, *curve_sizes]:
        parse_size(size)
    flops_per_second = env["matmul_flops_per_second"]["fp32"]
    budget = memory_budget(args.device, args.budget_gb)
    print(f"budget {budget / 2**30:.1f} GiB\n", flush=True)

    started = time.perf_counter()
    cases: dict[tuple[str, str], Case] = {}
    by_size = sorted(
        set(sizes) | set(curve_sizes), key=lambda size: parse_size(size)[0] * parse_size(size)[1]
    )
    for size in by_size:
        for implementation in ("straightforward", "lean"):
            if implementation == "straightforward" and size not in sizes:
                continue
            case = measure(implementation, size, args, budget)
            cases[implementation, size] = case
            print(
                f"  {implementation:>15} {size:>8}: {_outcome(case, seconds(case.seconds))}, "
                f"{_outcome(case, gib(case.peak_bytes))}",
                flush=True,
            )

    print(f"\n{comparison_table(cases, sizes, flops_per_second)}\n")
    curve = [
        cases["lean", size] for size in by_size if size in curve_sizes and cases["lean", size].skipped is None
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    if len(curve) >= 2:
        intercept, slope = linear_fit(
            [case.positions for case in curve], [case.peak_bytes or 0 for case in curve]
        )
        print("Lean peak memory against image size (same-size reference):\n")
        print(curve_table(curve, intercept, slope))
        print(f"\nlinear fit: {intercept / 2**20:.0f} MiB + {slope / 1024:.2f} KiB per LR position")
        reference_cases = [case for (name, _), case in cases.items() if name == "straightforward"]
        plot_curve(curve, reference_cases, intercept, slope, args.out / "search_transfer_memory.png")
    record["load_average"].append(os.getloadavg()[0])
    record.update(budget_bytes=budget, cases=[asdict(case) for case in cases.values()])
    write_record(args.out, "search_transfer.json", record)
    print(f"and {args.out / 'search_transfer_memory.png'}; total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
