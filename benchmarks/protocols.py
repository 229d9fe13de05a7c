"""``evaluate protocol=all`` against one ``evaluate`` run per protocol, on the embedded sample set.

    python benchmarks/protocols.py                 # the default small TTSR, random weights, CPU
    python benchmarks/protocols.py --n-feats 64 --blocks 16 16 8 4
    python benchmarks/protocols.py --tiny          # a generator of 8 channels, one image of one set

``protocol=all`` runs the generator once per image of each evaluation set and scores that output under
every protocol (conf/protocol/: ttsr_official, ttsr_stitched, basicsr, mmagic, masa); separately,
each protocol would re-run the generator on every set. Both ways run the real command line
(``python -m ttsr_lightning.evaluate``, each in a fresh process: what a user types), with a generator
file of random weights (the time does not depend on them) on the sample set's nine CUFED5 sets. Also
checks that the numbers agree: every protocol's per-set PSNR from the one run equals its separate run's.
``--tiny`` runs the same commands with the tiny generator on the first image of CUFED5_L1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _measure import TINY_MODEL, add_tiny_option
from environment import machine_description

from ttsr_lightning.checkpoints.generator_file import save_generator
from ttsr_lightning.data.sample import build_sample_dataset
from ttsr_lightning.markdown import markdown_table
from ttsr_lightning.models import TTSRGenerator
from ttsr_lightning.protocols import available_protocols

REPO_ROOT = Path(__file__).resolve().parents[1]
SMALL_MODEL = (32, (4, 4, 2, 1))  # n_feats, residual blocks per stage: the small TTSR of `make train`


def evaluate(ckpt: Path, data_dir: Path, run_dir: Path, protocol: str, overrides: list[str]) -> float:
    """Wall seconds of one ``evaluate`` command (the process start included)."""
    command = [
        sys.executable, "-m", "ttsr_lightning.evaluate", f"ckpt={ckpt}", "data=sample",
        f"paths.data_dir={data_dir}", f"hydra.run.dir={run_dir}", f"protocol={protocol}", "logger=none",
        "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "num_image_panels=0", *overrides,
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "WANDB_MODE": "disabled"})
    return time.perf_counter() - start


def per_set_psnr(run_dir: Path) -> dict[tuple[str, str], float]:
    results = json.loads((run_dir / "results.json").read_text())
    return {(row["set"], row["protocol"]): row["psnr"] for row in results["sets"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-feats", type=int, help="generator channels (default 32; 8 with --tiny)")
    parser.add_argument(
        "--blocks", type=int, nargs=4, help="residual blocks per stage (default 4 4 2 1; 1 1 1 1 with --tiny)"
    )
    add_tiny_option(parser)
    args = parser.parse_args()
    n_feats, blocks = TINY_MODEL if args.tiny else SMALL_MODEL
    args.n_feats, args.blocks = args.n_feats or n_feats, args.blocks or list(blocks)
    overrides = ["sets=[CUFED5_L1]", "trainer.limit_test_batches=1"] if args.tiny else []
    scope = "CUFED5_L1, its first image" if args.tiny else "9 CUFED5 sets x 6 images"
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        build_sample_dataset(work / "data" / "sample")
        torch.manual_seed(0)
        ckpt = work / "random.ckpt"
        save_generator(
            TTSRGenerator(n_feats=args.n_feats, num_res_blocks=args.blocks, vgg_weights="random"), ckpt
        )
        protocols = available_protocols()
        together = evaluate(ckpt, work / "data", work / "all", "all", overrides)
        separate = {name: evaluate(ckpt, work / "data", work / name, name, overrides) for name in protocols}
        combined = per_set_psnr(work / "all")
        largest = max(
            abs(combined[key] - value)
            for name in protocols
            for key, value in per_set_psnr(work / name).items()
        )
    total = sum(separate.values())
    print(machine_description())
    print(f"generator n_feats {args.n_feats}, blocks {args.blocks}; sample set: {scope}")
    runs = [
        (
            f"protocol=all (one generator pass per set, {len(protocols)} protocols scored)",
            f"{together:.1f} s",
        ),
        *((f"protocol={name} alone", f"{seconds:.1f} s") for name, seconds in separate.items()),
        (
            f"the {len(protocols)} separate runs together",
            f"{total:.1f} s ({total / together:.1f}x the one run)",
        ),
    ]
    print(markdown_table(("run", "wall time"), runs))
    print(f"largest per-set PSNR difference between the one run and the separate runs: {largest:.2e} dB")


if __name__ == "__main__":
    main()
