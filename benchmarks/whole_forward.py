"""The whole no-grad forward: ours (lean, untiled; budgeted) against the official TTSR forward.

    python benchmarks/whole_forward.py compare     # CUFED5 size, LR 96x128, LR 192x256, the largest official
    python benchmarks/whole_forward.py budget      # 1920x1080 SR: max_memory=4GiB against untiled
    python benchmarks/whole_forward.py curve       # peak memory against the SR size, and the PNG
    python benchmarks/whole_forward.py compare --sizes 512x384     # a quick look
    python benchmarks/whole_forward.py budget --tiny     # any part's code path, tiny sizes: seconds

Sizes are SR (HR) W x H pixels, the LR a quarter of each side, with a same-size reference. Inputs are
photographs (scikit-image astronaut for the LR, coffee for the reference, PIL-bicubic resized to the
size, preprocessed as ``infer`` does). One set of random weights (the paper's network, seed 0) is
used by both sides: ours as is, the official ``TTSR`` with the same tensors
(:func:`~ttsr_lightning.checkpoints.official_weights.project_to_official_state_dict`), imported by
``official_harness.py`` from the git-ignored copy in ``third_party/TTSR`` (without the copy the
official cases are not run, and the run says why). The implementations:

- ``official``: the official ``TTSR.forward`` under ``torch.no_grad()`` (returns sr, S, T_lv3..1);
- ``ours``: :func:`budgeted_forward` without a budget: the lean forward that ``infer`` and ``evaluate``
  run (sr, S, hard attention; the textures are not kept);
- ``ours_forward``: ``TTSRGenerator.forward`` under ``torch.no_grad()`` (returns the textures too);
- ``budgeted``: :func:`budgeted_forward` planned for ``max_memory=4GiB`` (tiles when the whole image
  does not fit).

Each case runs in a fresh process (``_measure.run_case``) after a warm-up on a tiny image; peak memory
is the growth of peak RSS during the call (outputs included), time the best of two calls for SRs up
to 512x384, else one. A case whose estimate exceeds ``--budget-gb`` (16 by default) or 75 % of the
memory available at the start is not run. Outputs are compared in this process: hard attention
disagreements (with the relevance gap between the two choices: a near-tie when it is at the float32
rounding of a cosine), S and SR max |difference| in [0, 1] units. Writes <out>/whole_forward_<part>.json,
and the curve part <out>/whole_forward_memory.png. ``--tiny``: each part at SR sizes of a few dozen
pixels, with a generator of 8 channels and one residual block per stage and a budget of 16 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import official_harness
import skimage.data
import torch
import torch.nn.functional as F
from _measure import (
    RESULTS_DIR,
    add_tiny_option,
    gib,
    model_size,
    ratio,
    run_case,
    seconds,
    status_bytes,
    timed_peak,
    write_record,
)
from environment import machine_description
from inference import parse_size
from PIL import Image

from ttsr_lightning.budgeted import available_memory, budgeted_forward, format_bytes, plan_forward
from ttsr_lightning.checkpoints.official_weights import project_to_official_state_dict
from ttsr_lightning.data.preprocessing import bicubic_resize, down_up, to_tensor
from ttsr_lightning.markdown import markdown_table
from ttsr_lightning.models import TTSRGenerator

# Per part, the SR sizes and the implementations run at each; "largest" is the largest of
# OFFICIAL_CANDIDATES that the official forward fits (estimated).
_COMPARED = ["official", "ours", "ours_forward"]
PARTS: dict[str, dict[str, list[str]]] = {
    "compare": {"500x332": _COMPARED, "512x384": _COMPARED, "1024x768": _COMPARED, "largest": _COMPARED},
    "budget": {"1920x1080": ["budgeted", "ours"]},
    # the curve adds these points to the others' (untiled up to 1080p, budgeted at 1080p)
    "curve": {"1280x720": ["budgeted", "ours"], "2560x1440": ["budgeted"]},
}
# --tiny: the same parts at tiny SR sizes (the budgeted cases planned for TINY_BUDGET)
TINY_PARTS: dict[str, dict[str, list[str]]] = {
    "compare": {"64x48": _COMPARED},
    "budget": {"128x96": ["budgeted", "ours"]},
    "curve": {"96x72": ["budgeted", "ours"]},
}
BUDGET = 4 * 2**30  # max_memory of the budgeted cases
TINY_BUDGET = 16 * 2**20  # at these sizes the planner fits it untiled, its search chunked
# The candidates for "the largest the official code fits", largest first.
OFFICIAL_CANDIDATES = ["960x720", "896x672", "832x624", "768x576"]
OUTPUTS = "WHOLE_FORWARD_OUTPUTS"  # environment variable: the folder where case processes save outputs
_REPEAT_UP_TO_PIXELS = 512 * 384
# Peak of the official forward: the relevance, the unfolded query/key patches and the unfolded lv1/lv2
# values with their gathered copies (floats per LR position pair / per position), and the network;
# with a margin (this overestimates the measured 2.5 GiB at 512x384 by 1.1x already).
_OFFICIAL_FLOATS_PER_POSITION = 2 * 2304 + 2 * 64 * 144 + 2 * 128 * 36
_NETWORK_BYTES_PER_PIXEL = 3 * 1024
_OFFICIAL_MARGIN = 1.1


def photograph_inputs(width: int, height: int) -> tuple[torch.Tensor, ...]:
    """lr, lr_up (astronaut), ref, ref_down_up (coffee) for a width x height SR, as ``infer`` makes them."""
    lr = bicubic_resize(Image.fromarray(skimage.data.astronaut()), width // 4, height // 4)
    ref = bicubic_resize(Image.fromarray(skimage.data.coffee()), width, height)
    images = (lr, bicubic_resize(lr, width, height), ref, down_up(ref))
    return tuple(to_tensor(image).unsqueeze(0) for image in images)


def our_generator(args: argparse.Namespace) -> TTSRGenerator:
    """The paper's network (or ``--tiny``'s), random weights (seed 0), lean search-transfer."""
    n_feats, blocks = model_size(args)
    torch.manual_seed(0)
    return TTSRGenerator(n_feats=n_feats, num_res_blocks=list(blocks), vgg_weights="random").eval()


def budget(args: argparse.Namespace) -> int:
    """max_memory of the budgeted cases, bytes."""
    return TINY_BUDGET if args.tiny else BUDGET


def official_estimate(width: int, height: int) -> int:
    """Rough peak growth of the official forward (see the constants)."""
    positions = width * height // 16
    search = 4 * positions * (positions + _OFFICIAL_FLOATS_PER_POSITION)
    return int(_OFFICIAL_MARGIN * (search + _NETWORK_BYTES_PER_PIXEL * width * height))


def official_model(args: argparse.Namespace) -> tuple[Any, list[torch.Tensor]]:
    """The official TTSR with our generator's weights, and the list its search fills with hard_index."""
    official = official_harness.load()
    official_options = official_harness.official_args(official, "cpu", *model_size(args), batch=1, lr_size=40)
    model = official.TTSR(official_options).eval()
    state = project_to_official_state_dict(our_generator(args).state_dict())
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not name.startswith("LTE_copy.") for name in missing):
        raise RuntimeError(f"official keys differ: missing {missing}, unexpected {unexpected}")
    recorded: list[torch.Tensor] = []
    search_transfer = model.SearchTransfer
    batch_index_select = search_transfer.bis

    def recording(values: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
        recorded.append(index)  # R_lv3_star_arg: the official hard attention
        return batch_index_select(values, dim, index)

    search_transfer.bis = recording
    return model, recorded


def run_worker(implementation: str, size: str, args: argparse.Namespace) -> dict[str, Any]:
    """One case in this (fresh) process: seconds, peak bytes; the outputs saved for the comparison."""
    width, height = parse_size(size)
    inputs = photograph_inputs(width, height)
    warm_up = photograph_inputs(64, 48)
    outputs: dict[str, torch.Tensor] = {}
    if implementation == "official":
        model, recorded = official_model(args)

        def call(images: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
            recorded.clear()
            lr, lr_up, ref, ref_down_up = images
            sr, soft_attention, *_ = model(lr=lr, lrsr=lr_up, ref=ref, refsr=ref_down_up)
            return {"sr": sr, "soft_attention": soft_attention, "hard_index": recorded[0]}
    else:
        generator = our_generator(args)
        max_memory = budget(args) if implementation == "budgeted" else None

        def call(images: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
            if implementation == "ours_forward":
                out = generator(*images)
            else:
                lr, lr_up, ref, ref_down_up = images
                plan = plan_forward(
                    generator, (lr.size(2), lr.size(3)), [(ref.size(2), ref.size(3))], max_memory
                )
                out = budgeted_forward(generator, lr, lr_up, ref, ref_down_up, plan)
            return {"sr": out.sr, "soft_attention": out.soft_attention, "hard_index": out.hard_index}

    record: dict[str, Any] = {}
    with torch.no_grad():
        call(warm_up)
        baseline_rss = status_bytes("VmRSS")
        elapsed, peak = timed_peak(lambda: outputs.update(call(inputs)), "cpu")
        record["peak_bytes"], record["first_seconds"], record["rss_before"] = peak, elapsed, baseline_rss
        timings = [elapsed]
        if width * height <= _REPEAT_UP_TO_PIXELS:
            timings.append(timed_peak(lambda: call(inputs), "cpu")[0])
        record["seconds"] = min(timings)
    if implementation in ("budgeted", "ours"):
        generator = our_generator(args)
        plan = plan_forward(
            generator,
            (height // 4, width // 4),
            [(height, width)],
            budget(args) if implementation == "budgeted" else None,
        )
        record["plan"] = plan.describe()
        record["estimated_bytes"] = plan.estimated_bytes
    torch.save(outputs, Path(os.environ[OUTPUTS]) / f"{implementation}_{size}.pt")
    return record


def near_tie_gaps(
    size: str, ours: torch.Tensor, official: torch.Tensor, args: argparse.Namespace
) -> list[float]:
    """|relevance(choice of ours) - relevance(choice of official)| at each LR position where the two
    hard attentions differ, from our LTE (same weights) in float64."""
    disagreements = (ours != official).flatten().nonzero().flatten()
    if not len(disagreements):
        return []
    width, height = parse_size(size)
    _, lr_up, _, ref_down_up = photograph_inputs(width, height)
    lte = our_generator(args).lte
    assert lte is not None
    with torch.no_grad():
        query, key = (lte(image)[2].double() for image in (lr_up, ref_down_up))
    query_patches = F.normalize(F.unfold(query, 3, padding=1)[0, :, disagreements], dim=0)
    key_patches = F.normalize(F.unfold(key, 3, padding=1)[0], dim=0)
    chosen = [
        (key_patches[:, index.flatten()[disagreements]] * query_patches).sum(0) for index in (ours, official)
    ]
    return (chosen[0] - chosen[1]).abs().tolist()


def compare(
    size: str, implementation: str, reference: str, folder: Path, args: argparse.Namespace
) -> dict[str, Any] | None:
    """Output differences of ``implementation`` from ``reference`` at ``size`` (both measured)."""
    paths = [folder / f"{name}_{size}.pt" for name in (implementation, reference)]
    if not all(path.is_file() for path in paths):
        return None
    ours, theirs = (torch.load(path) for path in paths)
    gaps = near_tie_gaps(size, ours["hard_index"], theirs["hard_index"], args)
    to_8bit = lambda sr: torch.round((sr + 1) * 127.5)  # noqa: E731
    return {
        "hard_index_disagreements": len(gaps),
        "lr_positions": ours["hard_index"].numel(),
        "max_relevance_gap": max(gaps, default=0.0),
        "soft_attention_max_abs": float((ours["soft_attention"] - theirs["soft_attention"]).abs().max()),
        "sr_max_abs": float((ours["sr"] - theirs["sr"]).abs().max()) / 2,
        "sr_8bit_pixels_changed": int((to_8bit(ours["sr"]) != to_8bit(theirs["sr"])).any(dim=1).sum()),
    }


def plot_curve(cases: list[dict[str, Any]], path: Path, max_memory: int) -> None:
    """Peak memory against the SR pixels: ours untiled, official, budgeted (with the ``max_memory``
    line, bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    styles = {"official": "s-", "ours": "o-", "budgeted": "^-"}
    budget_name = format_bytes(max_memory)
    labels = {
        "official": "official forward",
        "ours": "ours, untiled",
        "budgeted": f"ours, max_memory={budget_name}",
    }
    for implementation, style in styles.items():
        points = sorted(
            (np.prod(parse_size(case["size"])) / 1e6, case["peak_bytes"] / 2**30)
            for case in cases
            if case["implementation"] == implementation and case.get("peak_bytes")
        )
        if points:
            axes.plot(*zip(*points, strict=True), style, label=labels[implementation])
    axes.axhline(max_memory / 2**30, color="grey", linestyle="--", linewidth=1, label=f"budget {budget_name}")
    axes.set_xlabel("SR size (megapixels), same-size reference")
    axes.set_ylabel("peak memory growth (GiB, RSS)")
    axes.set_title("Whole no-grad forward, CPU: peak memory against the SR size", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=sorted(PARTS), nargs="?", default="compare")
    parser.add_argument("--sizes", nargs="+", help="SR sizes WxH (multiples of 4) instead of the part's")
    parser.add_argument("--budget-gb", type=float, default=16.0, help="skip cases estimated above this")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--worker", nargs=2, metavar=("IMPLEMENTATION", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)  # run_case passes it
    add_tiny_option(parser)
    args = parser.parse_args()
    args.threads = None  # run_case: no --threads option here
    if args.tiny:
        torch.set_num_threads(1)  # as _measure.parse_arguments: tiny ops gain nothing from threads
    if args.worker:
        print(json.dumps(run_worker(*args.worker, args)))
        return
    part = (TINY_PARTS if args.tiny else PARTS)[args.part]
    if args.sizes:
        part = {size: sorted({name for names in part.values() for name in names}) for size in args.sizes}
    limit = int(min(args.budget_gb * 2**30, 0.75 * available_memory(torch.device("cpu"))))
    load_at_start = os.getloadavg()[0]
    print(f"Machine: {machine_description()}; load average {load_at_start:.1f}; limit {format_bytes(limit)}")
    largest = next(
        (size for size in OFFICIAL_CANDIDATES if official_estimate(*parse_size(size)) <= limit), None
    )
    if "largest" in part:
        implementations = part.pop("largest")
        if largest is not None:
            part[largest] = implementations
    sizes = list(part)
    official_missing = official_harness.missing_reason()
    if official_missing and any("official" in names for names in part.values()):
        print(f"official code not measured: {official_missing}")

    cases: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        os.environ[OUTPUTS] = folder
        for size in sizes:
            for implementation in part[size]:
                case: dict[str, Any] = {"implementation": implementation, "size": size}
                estimate = official_estimate(*parse_size(size))
                if implementation == "official" and official_missing:
                    case["skipped"] = "not run: official code not found"
                elif implementation == "official" and estimate > limit:
                    case["skipped"] = f"not run: estimated {format_bytes(estimate)}"
                else:
                    result = run_case(__file__, args, implementation, size)
                    case.update(result if isinstance(result, dict) else {"skipped": result})
                cases.append(case)
                outcome = case.get("skipped") or f"{seconds(case['seconds'])}, {gib(case['peak_bytes'])}"
                print(f"  {implementation:>13} {size:>9}: {outcome}", flush=True)
            for implementation, reference in (
                ("ours", "official"),
                ("ours_forward", "official"),
                ("budgeted", "ours"),
            ):
                difference = compare(size, implementation, reference, Path(folder), args)
                if difference is not None:
                    cases.append(
                        {"implementation": f"{implementation} vs {reference}", "size": size, **difference}
                    )
                    print(f"  {implementation} vs {reference} {size}: {difference}", flush=True)
    print_table(cases, sizes)

    record = {
        "machine": machine_description(),
        "load_average": [load_at_start, os.getloadavg()[0]],
        "limit_bytes": limit,
        "budget_bytes": budget(args),
        "cases": cases,
    }
    write_record(args.out, f"whole_forward_{args.part}.json", record)
    if args.part == "curve":
        plot_curve(cases + load_other_parts(args.out), args.out / "whole_forward_memory.png", budget(args))


def load_other_parts(folder: Path) -> list[dict[str, Any]]:
    """The measured cases of the compare and budget parts (the curve adds their points)."""
    cases = []
    for part in ("compare", "budget"):
        path = folder / f"whole_forward_{part}.json"
        if path.is_file():
            cases += json.loads(path.read_text())["cases"]
    return cases


def print_table(cases: list[dict[str, Any]], sizes: list[str]) -> None:
    """Markdown: per size, each side's time and peak, ours / official ratios."""
    measured = {(case["implementation"], case["size"]): case for case in cases}
    header = (
        "SR (W x H)",
        "official time",
        "ours time",
        "official peak",
        "ours peak",
        "ours_forward peak",
        "memory ratio",
        "budgeted time",
        "budgeted peak",
    )
    rows = []
    for size in sizes:
        official, ours, forward, budgeted = (
            measured.get((name, size), {}) for name in ("official", "ours", "ours_forward", "budgeted")
        )
        if not (official or ours or budgeted):
            continue
        cells = [
            size,
            official.get("skipped") or seconds(official.get("seconds")),
            seconds(ours.get("seconds")),
            official.get("skipped") or gib(official.get("peak_bytes")),
            gib(ours.get("peak_bytes")),
            gib(forward.get("peak_bytes")),
            ratio(official.get("peak_bytes"), ours.get("peak_bytes")),
            seconds(budgeted.get("seconds")),
            gib(budgeted.get("peak_bytes")),
        ]
        rows.append(cells)
    print("\n" + markdown_table(header, rows))


if __name__ == "__main__":
    main()
