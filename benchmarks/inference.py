"""Full TTSR generator inference with the straightforward and the lean search-transfer.

    python benchmarks/inference.py                    # CPU: HR 500x332 (CUFED5), 1024x768, 1280x720
    python benchmarks/inference.py --device cuda      # adds 1920x1080 and 3840x2160
    python benchmarks/inference.py --sizes 256x192    # a quick look
    python benchmarks/inference.py --device cuda --max-memory 8 --official third_party/TTSR
    python benchmarks/inference.py --tiny             # the same code paths, a tiny generator: seconds

The paper-size generator (n_feats 64, residual blocks 16/16/8/4; random weights, on which neither
time nor memory depends) on an HR image of W x H (LR = W/4 x H/4, random in [-1, 1]) with a
same-size reference, under torch.no_grad(). The two rows of a size use the same generator with its
``search_transfer`` module set to :class:`SearchTransfer` or :class:`LeanSearchTransfer`. Each case
runs in a fresh process after a warm-up on a tiny image (time: the best of up to three runs where one
takes under a second; on a GPU the first also grows the allocator's pool); peak memory is measured as in
``_measure.py`` (CPU peak RSS growth, GPU max_memory_allocated) and includes the output. A case whose
estimated footprint exceeds the budget is not run: "does not fit".

The floor is the FLOPs divided by the device's measured fp32 matmul rate, split into the network
(LTE x3 and main network, counted by torch's FlopCounterMode) and the relevance matmul of each
search-transfer (2 * 2304 * N * Nk straightforward, 2 * 256 * N * Nk lean; N, Nk LR and Ref positions).

``--max-memory GIB`` adds, at the largest size, the path ``infer`` runs (``budgeted_forward``, main
network in tiles) planned for that budget; ``--official [DIR]`` adds the official generator
(``official_harness.py``, same sizes and inputs) with the ratio of ours (lean) to it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import official_harness
import torch
from _measure import (
    STRAIGHTFORWARD_VS_LEAN,
    gib,
    memory_budget,
    model_size,
    parse_arguments,
    ratio,
    run_case,
    run_worker_if_asked,
    seconds,
    timed_peak,
    write_record,
)
from environment import describe, environment
from torch.utils.flop_counter import FlopCounterMode

from ttsr_lightning.budgeted import budgeted_forward, plan_forward
from ttsr_lightning.markdown import markdown_table
from ttsr_lightning.models import SearchTransfer, TTSRGenerator
from ttsr_lightning.models.lean_search_transfer import LeanSearchTransfer

CPU_SIZES = ["500x332", "1024x768", "1280x720"]
GPU_SIZES = [*CPU_SIZES, "1920x1080", "3840x2160"]
TINY_SIZES, TINY_MAX_MEMORY_GIB = ["32x24"], 3 / 1024
IMPLEMENTATIONS = {"straightforward": SearchTransfer, "lean": LeanSearchTransfer}

_FLOAT_BYTES = 4
_PATCH_LENGTH = 9 * 256
# Rough bytes per HR pixel of everything but the search-transfer (LTE and main-network activations
# alive at once under no_grad), from the lean path's measured peaks on CPU.
_NETWORK_BYTES_PER_HR_PIXEL = 3 * 1024
_FLOP_COUNT_SIZE = (128, 96)  # HR size at which the network FLOPs are counted, then scaled by area
_REPEAT_BELOW_SECONDS = 1.0
_MAX_RUNS = 3


@dataclass
class Case:
    """One measured (or skipped) inference of one implementation at one HR size."""

    implementation: str
    size: str
    estimated_bytes: int
    seconds: float | None = None
    peak_bytes: int | None = None
    skipped: str | None = None
    plan: str | None = None  # the budgeted path's tiles and halo


def parse_size(size: str) -> tuple[int, int]:
    """'1024x768' -> (width 1024, height 768) HR pixels, both multiples of 4."""
    match = re.fullmatch(r"(\d+)x(\d+)", size)
    if match is None or int(match.group(1)) % 4 or int(match.group(2)) % 4:
        raise argparse.ArgumentTypeError(
            f"size must be WIDTHxHEIGHT in HR pixels, multiples of 4; got {size!r}"
        )
    return int(match.group(1)), int(match.group(2))


def generator_inputs(width: int, height: int, device: str) -> tuple[torch.Tensor, ...]:
    """lr, lr_up, ref, ref_down_up for an HR of width x height and a same-size reference."""
    generator = torch.Generator(device=device).manual_seed(0)

    def image(w: int, h: int) -> torch.Tensor:
        return torch.rand(1, 3, h, w, generator=generator, device=device) * 2 - 1

    return image(width // 4, height // 4), image(width, height), image(width, height), image(width, height)


def build_generator(
    implementation: str,
    device: str,
    n_feats: int = 64,
    num_res_blocks: tuple[int, ...] = (16, 16, 8, 4),
) -> TTSRGenerator:
    """The generator (paper size by default), random weights (seed 0), with the named search-transfer."""
    torch.manual_seed(0)
    generator = TTSRGenerator(n_feats=n_feats, num_res_blocks=num_res_blocks, vgg_weights="random")
    generator.search_transfer = IMPLEMENTATIONS[implementation]()
    return generator.eval().to(device)


def estimated_bytes(implementation: str, width: int, height: int) -> int:
    """Rough peak footprint: the search-transfer's big tensors plus the network's activations."""
    positions = width * height // 16
    network = _NETWORK_BYTES_PER_HR_PIXEL * width * height
    if implementation in ("straightforward", "official"):  # the official search is the straightforward one
        # relevance + unfolded query/key patches + the lv1 value unfold and its gathered copy.
        search_transfer = _FLOAT_BYTES * positions * (positions + 2 * _PATCH_LENGTH + 2 * 64 * 144)
    else:
        search_transfer = 2 * 2**30  # one relevance tile at most; the rest is linear and small
    return network + search_transfer


def run_worker(implementation: str, size: str, args: argparse.Namespace) -> dict[str, Any]:
    """One inference of the generator (paper size, or tiny) in this process: seconds and peak bytes."""
    width, height = parse_size(size)
    n_feats, blocks = model_size(args)
    if implementation == "official":
        return official_harness.inference(
            args.device, width, height, n_feats=n_feats, num_res_blocks=blocks, root=args.official
        )
    if implementation == "budgeted":
        max_memory = int(args.max_memory * 2**30)
        return measure_budgeted_inference(width, height, args.device, max_memory, n_feats, blocks)
    return measure_inference(implementation, width, height, args.device, n_feats, blocks)


def measure_inference(
    implementation: str,
    width: int,
    height: int,
    device: str,
    n_feats: int = 64,
    num_res_blocks: tuple[int, ...] = (16, 16, 8, 4),
) -> dict[str, float]:
    """Seconds (best of the repeats) and peak bytes (first run) of one no-grad generator call."""
    generator = build_generator(implementation, device, n_feats, num_res_blocks)
    with torch.no_grad():
        generator(*generator_inputs(64, 48, device))  # warm-up: thread pools, allocator, kernels
        inputs = generator_inputs(width, height, device)
        return _best_of_runs(lambda: generator(*inputs), device)


def measure_budgeted_inference(
    width: int,
    height: int,
    device: str,
    max_memory: int,
    n_feats: int = 64,
    num_res_blocks: tuple[int, ...] = (16, 16, 8, 4),
) -> dict[str, Any]:
    """As :func:`measure_inference` for the path ``infer`` runs: ``budgeted_forward`` (lean search)
    under a plan for ``max_memory`` bytes; also the plan (tiles, halo) and its estimated peak."""
    generator = build_generator("lean", device, n_feats, num_res_blocks)
    plan = plan_forward(generator, (height // 4, width // 4), [(height, width)], max_memory)
    warmup = generator_inputs(64, 48, device)
    budgeted_forward(generator, *warmup, plan_forward(generator, (12, 16), [(48, 64)], None))
    inputs = generator_inputs(width, height, device)
    return {
        **_best_of_runs(lambda: budgeted_forward(generator, *inputs, plan), device),
        "budget_bytes": max_memory,
        "plan": plan.describe(),
        "plan_estimated_bytes": plan.estimated_bytes,
    }


def _best_of_runs(call: Callable[[], object], device: str) -> dict[str, float]:
    """Seconds (best of the runs) and peak bytes (first run) of ``call``. A call under a second is
    repeated (up to three runs): on a GPU the first call at a new size also pays for growing the
    allocator's pool."""
    elapsed, peak = timed_peak(call, device)
    timings = [elapsed]
    while len(timings) < _MAX_RUNS and sum(timings) < _REPEAT_BELOW_SECONDS:
        timings.append(timed_peak(call, device)[0])
    return {"seconds": min(timings), "first_seconds": elapsed, "peak_bytes": peak}


def network_flops_per_hr_pixel(n_feats: int = 64, num_res_blocks: tuple[int, ...] = (16, 16, 8, 4)) -> float:
    """FLOPs of the LTE passes and the main network per HR pixel (same-size reference)."""
    generator = build_generator("lean", "cpu", n_feats, num_res_blocks)
    width, height = _FLOP_COUNT_SIZE
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        generator(*generator_inputs(width, height, "cpu"))
    counts = counter.get_flop_counts()
    network = sum(sum(counts[f"TTSRGenerator.{name}"].values()) for name in ("lte", "main_net"))
    return network / (width * height)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", help="HR sizes WxH (multiples of 4)")
    parser.add_argument(
        "--max-memory", type=float, help="GiB: also infer's budgeted path at the largest size"
    )
    official_harness.add_official_argument(parser, "generator")
    args = parse_arguments(parser)
    if run_worker_if_asked(args, run_worker):
        return
    sizes = args.sizes or (TINY_SIZES if args.tiny else GPU_SIZES if args.device == "cuda" else CPU_SIZES)
    for size in sizes:
        parse_size(size)
    if args.tiny and args.max_memory is None:
        args.max_memory = TINY_MAX_MEMORY_GIB
    implementations = list(IMPLEMENTATIONS)
    official_missing = args.official is not None and official_harness.missing_reason(args.official)
    if args.official is not None and not official_missing:
        implementations.append("official")
    extra = ["--official", str(args.official)] if "official" in implementations else []
    if args.max_memory is not None:
        extra += ["--max-memory", str(args.max_memory)]

    load_at_start = os.getloadavg()[0]
    env = environment(args.device, args.tiny)
    flops_per_second = env["matmul_flops_per_second"]["fp32"]
    per_pixel = network_flops_per_hr_pixel(*model_size(args))
    budget = memory_budget(args.device, args.budget_gb)
    print(
        f"{describe(env)}\nload average {load_at_start:.1f}; network {per_pixel / 1e6:.2f} MFLOP per HR "
        f"pixel; budget {budget / 2**30:.1f} GiB\n",
        flush=True,
    )
    if official_missing:
        print(f"official code not measured: {official_missing}\n")

    cases: dict[tuple[str, str], Case] = {}
    runs = [(implementation, size) for size in sizes for implementation in implementations]
    if args.max_memory is not None:
        runs.append(("budgeted", sizes[-1]))
    for implementation, size in runs:
        width, height = parse_size(size)
        case = Case(implementation, size, estimated_bytes(implementation, width, height))
        if case.estimated_bytes > budget and implementation not in ("lean", "budgeted"):
            case.skipped = "does not fit"  # lean and budgeted always run: running out is a result
        else:
            result = run_case(__file__, args, implementation, size, extra)
            if isinstance(result, str):
                case.skipped = result
            else:
                case.seconds, case.peak_bytes = result["seconds"], int(result["peak_bytes"])
                case.plan = result.get("plan")
        cases[implementation, size] = case
        outcome = case.skipped or f"{seconds(case.seconds)}, {gib(case.peak_bytes)}"
        print(f"  {implementation:>15} {size:>9}: {outcome}", flush=True)

    official = "official" in implementations
    floors = ["floor network", "floor relevance (straightforward / lean)"]
    header = ["HR (W x H)", *STRAIGHTFORWARD_VS_LEAN, *floors]
    header += ["official time, peak", "lean vs official: speed, memory"] if official else []
    rows = []
    for size in sizes:
        width, height = parse_size(size)
        reference, lean = cases["straightforward", size], cases["lean", size]
        positions = width * height // 16
        floor_network = per_pixel * width * height / flops_per_second
        floor_reference = 2 * _PATCH_LENGTH * positions**2 / flops_per_second
        floor_lean = 2 * 256 * positions**2 / flops_per_second
        cells = [
            size,
            reference.skipped or seconds(reference.seconds),
            lean.skipped or seconds(lean.seconds),
            ratio(reference.seconds, lean.seconds),
            reference.skipped or gib(reference.peak_bytes),
            lean.skipped or gib(lean.peak_bytes),
            ratio(reference.peak_bytes, lean.peak_bytes),
            f"{floor_network:.2f} s",
            f"{floor_reference:.2f} s / {floor_lean:.2f} s",
        ]
        if official:
            theirs = cases["official", size]
            cells += [
                theirs.skipped or f"{seconds(theirs.seconds)}, {gib(theirs.peak_bytes)}",
                f"{ratio(theirs.seconds, lean.seconds)}, {ratio(theirs.peak_bytes, lean.peak_bytes)}",
            ]
        rows.append(cells)
    print("\n" + markdown_table(header, rows))
    if (budgeted := cases.get(("budgeted", sizes[-1]))) is not None:
        outcome = f"{seconds(budgeted.seconds)}, peak {gib(budgeted.peak_bytes)}; {budgeted.plan}"
        budget_text = f"max_memory={args.max_memory:g} GiB"
        print(f"\ninfer's path at {sizes[-1]} with {budget_text}: {budgeted.skipped or outcome}")

    record = {
        "environment": env,
        "command": sys.argv,
        "load_average": [load_at_start, os.getloadavg()[0]],
        "network_flops_per_hr_pixel": per_pixel,
        "budget_bytes": budget,
        "cases": [asdict(case) for case in cases.values()],
    }
    write_record(args.out, "inference.json", record)


if __name__ == "__main__":
    main()
