"""Throughput of the training loader (samples/s) with 0, 1 and 2 workers on the embedded sample set.

    python benchmarks/data_loader.py [--workers 0 1 2] [--epochs 6] [--batch-size 9] [--data-dir DIR]
    python benchmarks/data_loader.py --tiny     # the same code path: 0 and 1 workers, 2 epochs, seconds

Each worker count gets a fresh TrainDataModule loader (persistent workers when > 0) cutting the
sample set's own patch size; the first epoch (worker start-up included) is timed apart from the
following ones (steady state). A training step consumes one batch, so the loader keeps a GPU busy when
"ms per batch" is below the GPU step time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from ttsr_lightning.data import EpochSampler, TrainDataModule, build_sample_dataset
from ttsr_lightning.data.sample import PATCH

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import add_tiny_option  # noqa: E402
from environment import machine_description  # noqa: E402

DEFAULT = {"workers": [0, 1, 2], "epochs": 6}
TINY = {"workers": [0, 1], "epochs": 2}  # the worker path once, one steady epoch


def measure(root: Path, num_workers: int, batch_size: int, epochs: int) -> tuple[float, float, int]:
    """(first-epoch seconds, steady samples/s over the other epochs, samples per epoch)."""
    module = TrainDataModule(
        str(root / "CUFED" / "train"),
        batch_size=batch_size,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        patch_size=PATCH,
    )
    module.setup("fit")
    loader = module.train_dataloader()
    sampler = loader.sampler
    assert isinstance(sampler, EpochSampler)
    durations = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)  # what Lightning does at the start of each epoch
        start = time.perf_counter()
        for batch in loader:
            batch["hr"].sum()  # touch the data, as a training step would
        durations.append(time.perf_counter() - start)
    steady = len(sampler) * (epochs - 1) / sum(durations[1:])
    return durations[0], steady, len(sampler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", help="worker counts (default 0 1 2; 0 1 tiny)")
    parser.add_argument("--epochs", type=int, help="the first one is start-up; >= 2 (default 6; 2 tiny)")
    parser.add_argument("--batch-size", type=int, default=9)
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="sample set root (default: a temp folder)"
    )
    add_tiny_option(parser)
    args = parser.parse_args()
    for name, value in (TINY if args.tiny else DEFAULT).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2")

    with tempfile.TemporaryDirectory() as temporary:
        root = args.data_dir or Path(temporary)
        build_sample_dataset(root)
        print(f"machine: {machine_description()}")
        rows = [(workers, *measure(root, workers, args.batch_size, args.epochs)) for workers in args.workers]
    print(
        f"training loader on the embedded sample set: {rows[0][3]} samples per epoch, "
        f"batch {args.batch_size}, {PATCH}x{PATCH}, augmentation on; {args.epochs} epochs per worker count, "
        "the first timed apart\n"
    )
    header = (
        f"{'workers':>7} | {'samples/s':>9} | {'vs ' + str(rows[0][0]) + ' workers':>12} | "
        f"{'ms per batch':>12} | {'1st epoch s':>11}"
    )
    print(header)
    print("-" * len(header))
    for workers, first, rate, _ in rows:
        print(
            f"{workers:>7} | {rate:>9.1f} | {rate / rows[0][2]:>11.2f}x | "
            f"{1000 * args.batch_size / rate:>12.1f} | {first:>11.2f}"
        )


if __name__ == "__main__":
    main()
