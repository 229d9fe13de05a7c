"""CUFED5 with its five references: the stitched canvas against the native list of references.

    python benchmarks/multi_reference.py                  # CPU: HR 500x332 and five CUFED5-like refs
    python benchmarks/multi_reference.py --device cuda
    python benchmarks/multi_reference.py --threads 1      # every case on one torch thread
    python benchmarks/multi_reference.py --rounds 1       # one process per way (about 2 minutes)
    python benchmarks/multi_reference.py --tiny           # the same code path, tiny sizes: seconds

The paper-size generator (n_feats 64, residual blocks 16/16/8/4, random weights, on which neither
time nor memory depends; lean search-transfer) under torch.no_grad(), on an HR image of 500x332
(LR 125x83, random in [-1, 1]) with five references of CUFED5-like sizes (W x H: 500x332,
332x500, 500x372, 480x320, 400x300), given two ways:

- stitched: what ``data=cufed5`` with ``ref_level=stitched`` feeds the model (the authors'
  protocol): each reference pasted at the top-left of a black (-1) 500x500 canvas, the five
  canvases stacked into one 500x2500 reference (``ref_down_up`` pasted the same way);
- native: ``ref`` and ``ref_down_up`` as lists of the five images, each its own size (the search
  covers exactly their 49,475 lv3 positions instead of the canvas's 78,125, black padding included).

Each case runs in a fresh Python process (see ``_measure.py``) after a warm-up on tiny inputs of the
same kind: the time of one forward, the part of it spent in the search-transfer, and its peak memory
(CPU: peak RSS growth; GPU: max_memory_allocated growth), outputs included. The inputs are built
before the measured call (the canvas, too). The two ways alternate for ``--rounds`` rounds (stitched,
native, stitched, ...) and each reports its fastest round, so a burst of another job's load hits
both alike; peak memory is the largest over the rounds. Prints the machine and the load average
(other jobs skew the times, not the memory), a Markdown table with the ratios; writes
<out>/multi_reference.json. ``--tiny``: a generator of 8 channels and one residual block per stage,
HR 64x48, three references on 48x48 canvases, one round.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict, dataclass, field

import torch
from _measure import (
    gib,
    model_size,
    parse_arguments,
    ratio,
    run_case,
    run_worker_if_asked,
    seconds,
    timed_peak,
    write_record,
)
from environment import machine_description

from ttsr_lightning.markdown import markdown_table
from ttsr_lightning.models import TTSRGenerator

HR_SIZE = (500, 332)  # W x H, a CUFED5 image
# W x H, multiples of 4 (500x372 is a 500x375 image after the loaders' top-left //4*4 crop)
REF_SIZES = [(500, 332), (332, 500), (500, 372), (480, 320), (400, 300)]
CANVAS = 500  # the CUFED5 stitch canvas (data/cufed5.py, stitch_canvas)
WAYS = ("stitched", "native")
# --tiny: HR (W x H), references, canvas side
TINY_SETUP = ((64, 48), [(48, 32), (32, 48), (40, 40)], 48)
_WARM_UP_HR = (64, 48)
_WARM_UP_REFS = [(32, 48), (48, 32)]
_WARM_UP_CANVAS = 48


@dataclass
class Case:
    """One measured (or failed) generator forward with the references given one way."""

    way: str
    ref_lv3_positions: int
    seconds: float | None = None  # the fastest round
    search_transfer_seconds: float | None = None  # in that round
    peak_bytes: int | None = None  # the largest over the rounds
    round_seconds: list[float] = field(default_factory=list)
    skipped: str | None = None  # why it did not run

    def add(self, result: dict[str, float] | str) -> None:
        """Takes in one round's result (or why it failed)."""
        if isinstance(result, str):
            self.skipped = result
            return
        self.round_seconds.append(result["seconds"])
        if self.seconds is None or result["seconds"] < self.seconds:
            self.seconds, self.search_transfer_seconds = result["seconds"], result["search_transfer_seconds"]
        self.peak_bytes = max(self.peak_bytes or 0, int(result["peak_bytes"]))


def random_image(width: int, height: int, generator: torch.Generator, device: str) -> torch.Tensor:
    """(1, 3, height, width) uniform in [-1, 1]."""
    return torch.rand(1, 3, height, width, generator=generator, device=device) * 2 - 1


def stitch(images: list[torch.Tensor], canvas: int) -> torch.Tensor:
    """Each image at the top-left of a black (-1) canvas x canvas square, the squares stacked vertically."""
    composite = images[0].new_full((1, 3, canvas * len(images), canvas), -1.0)
    for row, image in enumerate(images):
        height, width = image.shape[-2:]
        composite[:, :, row * canvas : row * canvas + height, :width] = image
    return composite


def generator_inputs(
    way: str, hr_size: tuple[int, int], ref_sizes: list[tuple[int, int]], canvas: int, device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | list[torch.Tensor], torch.Tensor | list[torch.Tensor]]:
    """lr, lr_up, ref, ref_down_up: the references as a list (native) or stitched on canvases of that side."""
    generator = torch.Generator(device=device).manual_seed(0)
    width, height = hr_size
    lr = random_image(width // 4, height // 4, generator, device)
    lr_up = random_image(width, height, generator, device)
    refs = [random_image(*size, generator, device) for size in ref_sizes]
    refs_down_up = [random_image(*size, generator, device) for size in ref_sizes]
    if way == "native":
        return lr, lr_up, refs, refs_down_up
    return lr, lr_up, stitch(refs, canvas), stitch(refs_down_up, canvas)


def setup(args: argparse.Namespace) -> tuple[tuple[int, int], list[tuple[int, int]], int]:
    """The HR size (W, H), the reference sizes and the canvas side of this run (``--tiny``'s or CUFED5's)."""
    return TINY_SETUP if args.tiny else (HR_SIZE, REF_SIZES, CANVAS)


def ref_lv3_positions(way: str, ref_sizes: list[tuple[int, int]], canvas: int) -> int:
    """Reference positions the search covers (lv3: a quarter of each side)."""
    if way == "native":
        return sum((width // 4) * (height // 4) for width, height in ref_sizes)
    return len(ref_sizes) * (canvas // 4) ** 2


def parse_size(size: str) -> tuple[int, int]:
    """'500x332' -> (width 500, height 332) HR pixels."""
    width, height = (int(side) for side in size.split("x"))
    return width, height


def run_worker(way: str, size: str, args: argparse.Namespace) -> dict[str, float]:
    """One forward in this process: seconds, of which in the search-transfer, peak bytes."""
    device = args.device
    torch.manual_seed(0)
    n_feats, blocks = model_size(args)
    generator = TTSRGenerator(n_feats=n_feats, num_res_blocks=list(blocks), vgg_weights="random")
    generator = generator.eval().to(device)
    assert generator.search_transfer is not None
    search_seconds: list[float] = []

    def start_clock(*_: object) -> None:
        if device == "cuda":
            torch.cuda.synchronize()
        search_seconds.append(-time.perf_counter())

    def stop_clock(*_: object) -> None:
        if device == "cuda":
            torch.cuda.synchronize()
        search_seconds[-1] += time.perf_counter()

    generator.search_transfer.register_forward_pre_hook(start_clock)
    generator.search_transfer.register_forward_hook(stop_clock)
    with torch.no_grad():
        generator(*generator_inputs(way, _WARM_UP_HR, _WARM_UP_REFS, _WARM_UP_CANVAS, device))  # thread pools
        _, ref_sizes, canvas = setup(args)
        inputs = generator_inputs(way, parse_size(size), ref_sizes, canvas, device)
        elapsed, peak = timed_peak(lambda: generator(*inputs), device)
    return {"seconds": elapsed, "search_transfer_seconds": search_seconds[-1], "peak_bytes": peak}


def comparison_table(cases: dict[str, Case]) -> str:
    """Markdown: time, search-transfer time and peak memory of both ways, and stitched / native."""
    stitched, native = cases["stitched"], cases["native"]
    rows = [
        ("Ref lv3 positions searched", f"{stitched.ref_lv3_positions:,}", f"{native.ref_lv3_positions:,}"),
        ("forward time", seconds(stitched.seconds), seconds(native.seconds)),
        (
            "of which search-transfer",
            seconds(stitched.search_transfer_seconds),
            seconds(native.search_transfer_seconds),
        ),
        ("peak memory", gib(stitched.peak_bytes), gib(native.peak_bytes)),
    ]
    numbers = [
        (stitched.ref_lv3_positions, native.ref_lv3_positions),
        (stitched.seconds, native.seconds),
        (stitched.search_transfer_seconds, native.search_transfer_seconds),
        (stitched.peak_bytes, native.peak_bytes),
    ]
    cells = [
        (label, left, right, ratio(numerator, denominator))
        for (label, left, right), (numerator, denominator) in zip(rows, numbers, strict=True)
    ]
    return markdown_table((None, "stitched canvas", "native list", "stitched / native"), cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, help="processes per way, alternating (default 2; 1 tiny)")
    args = parse_arguments(parser)
    if run_worker_if_asked(args, run_worker):
        return
    if args.rounds is None:
        args.rounds = 1 if args.tiny else 2
    hr_size, ref_sizes, canvas = setup(args)

    # The load average says whether other processes shared the CPU (it skews times, not memory).
    load_at_start = os.getloadavg()[0]
    print(f"Machine: {machine_description()}; device {args.device}; load average {load_at_start:.1f}")
    references = ", ".join(f"{width}x{height}" for width, height in ref_sizes)
    print(f"HR {hr_size[0]}x{hr_size[1]}; references (W x H) {references}; canvas {canvas}\n", flush=True)

    started = time.perf_counter()
    cases = {way: Case(way, ref_lv3_positions(way, ref_sizes, canvas)) for way in WAYS}
    for round_number in range(1, args.rounds + 1):
        for way, case in cases.items():
            result = run_case(__file__, args, way, f"{hr_size[0]}x{hr_size[1]}")
            case.add(result)
            outcome = (
                result
                if isinstance(result, str)
                else f"{seconds(result['seconds'])}, {gib(int(result['peak_bytes']))}"
            )
            print(
                f"  round {round_number} {way:>8}: {outcome}; load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )

    print(f"\n{comparison_table(cases)}\n")
    record = {
        "machine": machine_description(),
        "device": args.device,
        "load_average": [load_at_start, os.getloadavg()[0]],
        "hr_size": list(hr_size),
        "ref_sizes": [list(size) for size in ref_sizes],
        "canvas": canvas,
        "rounds": args.rounds,
        "cases": [asdict(case) for case in cases.values()],
    }
    write_record(args.out, "multi_reference.json", record)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
