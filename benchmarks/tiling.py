"""Tiled main network against the whole image: the deviation as a function of the halo.

    python benchmarks/tiling.py                          # paper network (random) + the official small one
    python benchmarks/tiling.py --ckpt TTSR.pt           # also a trained generator (any weights file)
    python benchmarks/tiling.py --halos 0 8 16 --positions 1    # a quick look
    python benchmarks/tiling.py --tiny     # the same code path: a tiny network, LR 64x64, one tile

Inputs are photographs, preprocessed as ``infer`` does: the LR is scikit-image's astronaut (512x512)
PIL-bicubic /2, i.e. 256x256 (a 1024x1024 SR); the reference is the coffee photograph (600x400).
For each network the search runs once over the whole image (global, as in every tiled run) and the
whole SR once; then, for each halo, the main network runs on windows of a 16x16 LR-pixel core with
``halo`` LR pixels of context on every side (an interior tile: all four sides cut) at a few positions,
and the core is compared with the whole SR. A tile of any other size deviates the same way near its
seams, so this is the deviation of a tiled run with that halo. Deviation in [0, 1] units (the SR's
[-1, 1] halved); 8-bit output cannot show less than 0.5/255 = 1.96e-3. Also counted: SR pixels whose
8-bit value (``round((sr + 1) * 127.5)``) changes.

The receptive field is :func:`main_net_receptive_field` (exact; the tests check it against the
gradient of one output pixel): with a halo that large a tile is exact. Weights matter: random
initialisations damp far context; a trained network may not, so measure it with ``--ckpt``.
With ``--tiny`` the paper network is replaced by one of 8 channels and one residual block per stage
(receptive field 20), the LR is 64x64 and the reference 152x100, and one interior tile is probed.
Writes <out>/tiling.json.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import skimage.data
import torch
from _measure import RESULTS_DIR, TINY_MODEL, add_tiny_option, write_record
from environment import machine_description
from PIL import Image

from ttsr_lightning.budgeted import (
    DEFAULT_HALO,
    global_attention,
    main_net_receptive_field,
    plan_forward,
    window_sr,
)
from ttsr_lightning.checkpoints.loading import load_generator
from ttsr_lightning.data.preprocessing import bicubic_resize, down_up, to_tensor
from ttsr_lightning.models import TTSRGenerator

OFFICIAL_SMALL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official_small_G.pt"
CORE = 16  # LR pixels of the probed tile's core
# Core positions (top, left) in the 256x256 LR: the centre, then off-centre ones.
POSITIONS = [(120, 120), (64, 160), (168, 72)]
EIGHT_BIT_STEP = 0.5 / 255
HALOS = [0, 2, 4, 8, 12, 16, 20, 24, 32, 48, 64, 100]  # measured up to each network's receptive field
# --tiny: the LR side, the reference (coffee resized, W x H), the core positions in that LR
TINY_LR_SIDE, TINY_REF_SIZE, TINY_POSITIONS = 64, (152, 100), [(24, 24)]


def photograph_inputs(
    lr_side: int = 256, ref_size: tuple[int, int] | None = None
) -> tuple[torch.Tensor, ...]:
    """lr (1, 3, lr_side, lr_side), lr_up, ref (1, 3, 400, 600, or ``ref_size`` W x H), ref_down_up in
    [-1, 1], as ``infer`` makes them."""
    astronaut = Image.fromarray(skimage.data.astronaut())
    lr = bicubic_resize(astronaut, lr_side, lr_side)
    lr_up = bicubic_resize(lr, 4 * lr_side, 4 * lr_side)
    ref = Image.fromarray(skimage.data.coffee())
    if ref_size is not None:
        ref = bicubic_resize(ref, *ref_size)
    return tuple(to_tensor(image).unsqueeze(0) for image in (lr, lr_up, ref, down_up(ref)))


def networks(ckpt: Path | None, tiny: bool = False) -> dict[str, TTSRGenerator]:
    """The networks measured: the paper's (or with ``tiny`` a tiny one; random init, seed 0), the
    official small fixture, --ckpt."""
    torch.manual_seed(0)
    if tiny:
        n_feats, blocks = TINY_MODEL
        name = f"tiny network (n_feats {n_feats}, {'+'.join(map(str, blocks))}), random init"
        generator = TTSRGenerator(n_feats=n_feats, num_res_blocks=list(blocks), vgg_weights="random")
    else:
        name, generator = "paper network, random init", TTSRGenerator(vgg_weights="random")
    found = {name: generator.eval()}
    if OFFICIAL_SMALL.is_file():
        found["official small (n_feats 16, 1+1+1+1), official random init"] = load_generator(
            OFFICIAL_SMALL
        ).generator
    if ckpt is not None:
        loaded = load_generator(ckpt)
        found[f"{ckpt.name} ({loaded.description})"] = loaded.generator
    return found


def measure(
    generator: TTSRGenerator,
    halos: list[int],
    positions: list[tuple[int, int]],
    inputs: tuple[torch.Tensor, ...],
) -> dict[str, Any]:
    """Max deviation of the probed tiles from the whole SR (of ``inputs``: lr, lr_up, ref,
    ref_down_up), per halo."""
    lr, lr_up, ref, ref_down_up = inputs
    height, width = lr.shape[-2:]
    config = generator.config
    receptive_field = main_net_receptive_field(
        config["num_res_blocks"], config["csfi"], config["use_hard_attention"]
    )
    start = time.perf_counter()
    plan = plan_forward(generator, (height, width), [(ref.size(2), ref.size(3))], None)
    attention = global_attention(generator, lr_up, ref, ref_down_up, plan)
    whole = window_sr(generator, lr, attention, (0, 0, height, width))
    whole_seconds = time.perf_counter() - start
    rows = []
    for halo in [halo for halo in halos if halo <= receptive_field]:
        deviation, changed, seconds = 0.0, 0, 0.0
        for top, left in positions:
            window_top, window_left = max(0, top - halo), max(0, left - halo)
            window = (
                window_top,
                window_left,
                min(height, top + CORE + halo) - window_top,
                min(width, left + CORE + halo) - window_left,
            )
            start = time.perf_counter()
            tile = window_sr(generator, lr, attention, window)
            seconds += time.perf_counter() - start
            offset_top, offset_left = 4 * (top - window_top), 4 * (left - window_left)
            core = tile[:, :, offset_top : offset_top + 4 * CORE, offset_left : offset_left + 4 * CORE]
            expected = whole[:, :, 4 * top : 4 * (top + CORE), 4 * left : 4 * (left + CORE)]
            deviation = max(deviation, float((core - expected).abs().max()) / 2)
            to_8bit = lambda sr: torch.round((sr + 1) * 127.5)  # noqa: E731
            changed += int((to_8bit(core) != to_8bit(expected)).any(dim=1).sum())
        rows.append(
            {
                "halo": halo,
                "max_abs_deviation": deviation,
                "below_8bit_step": deviation < EIGHT_BIT_STEP,
                "changed_8bit_pixels": changed,
                "probed_pixels": len(positions) * (4 * CORE) ** 2,
                "seconds": seconds,
            }
        )
        print(
            f"    halo {halo:>3}: max |deviation| {deviation:.2e}, 8-bit pixels changed {changed}", flush=True
        )
    return {"receptive_field": receptive_field, "whole_seconds": whole_seconds, "halos": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--halos", type=int, nargs="+", default=HALOS)
    parser.add_argument("--positions", type=int, default=len(POSITIONS), help="probed tiles per halo (1-3)")
    parser.add_argument(
        "--ckpt", type=Path, help="also measure this weights file (e.g. the official TTSR.pt)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    add_tiny_option(parser)
    args = parser.parse_args()
    if args.tiny:
        torch.set_num_threads(1)  # as _measure.parse_arguments: tiny ops gain nothing from threads
    inputs = photograph_inputs(TINY_LR_SIDE, TINY_REF_SIZE) if args.tiny else photograph_inputs()
    positions = (TINY_POSITIONS if args.tiny else POSITIONS)[: args.positions]
    load_at_start = os.getloadavg()[0]
    print(f"Machine: {machine_description()}; load average {load_at_start:.1f}; default halo {DEFAULT_HALO}")
    record: dict[str, Any] = {"machine": machine_description(), "core": CORE, "default_halo": DEFAULT_HALO}
    with torch.no_grad():
        for name, generator in networks(args.ckpt, args.tiny).items():
            print(f"\n{name}", flush=True)
            record[name] = measure(generator, sorted(args.halos), positions, inputs)
            print(f"  receptive field {record[name]['receptive_field']} LR px", flush=True)
    record["load_average"] = [load_at_start, os.getloadavg()[0]]
    write_record(args.out, "tiling.json", record)


if __name__ == "__main__":
    main()
