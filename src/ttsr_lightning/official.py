"""``python -m ttsr_lightning.official convert IN OUT``: any weights file -> the project's generator file.

``IN`` is the official ``TTSR.pt`` / ``TTSR-rec.pt`` (researchmm/TTSR), a training run's
``last.ckpt`` or a generator file; ``OUT`` is a generator file
``{"format": "ttsr-lightning/generator", "version": 2, "generator_config": {...}, "state_dict": {...}}``
that ``evaluate``, ``infer`` and ``init_weights`` read. Formats are owned by
:mod:`ttsr_lightning.checkpoints`; this module only prints what the conversion did.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ttsr_lightning.checkpoints.generator_file import GENERATOR_FORMAT, GENERATOR_FORMAT_VERSION
from ttsr_lightning.checkpoints.loading import convert
from ttsr_lightning.cli import reported_errors
from ttsr_lightning.files import remove_unfinished_writes
from ttsr_lightning.models.interface import architecture


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ttsr_lightning.official", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser(
        "convert", help="official TTSR.pt / TTSR-rec.pt (or a run's .ckpt) -> generator file"
    )
    command.add_argument(
        "input", help="official state dict (TTSR.pt, TTSR-rec.pt), a run's .ckpt or a generator file"
    )
    command.add_argument("output", help="generator file to write (e.g. TTSR.ckpt)")
    args = parser.parse_args(argv)
    with reported_errors():
        remove_unfinished_writes([Path(args.output).parent])
        weights, generator = convert(args.input, args.output)
    print(f"{args.input}: {weights.description}")
    for note in weights.notes:
        print(f"  {note}")
    recorded = architecture(generator) or weights.config
    config = ", ".join(f"{name}={value}" for name, value in recorded.items())
    parameters = sum(parameter.numel() for parameter in generator.parameters())
    print(f"generator config: {config}")
    print(
        f"wrote {args.output} ({GENERATOR_FORMAT} v{GENERATOR_FORMAT_VERSION}, "
        f"{len(generator.state_dict())} tensors, {parameters:,} parameters)"
    )


def convert_main(argv: list[str] | None = None) -> None:
    """The ``ttsr-convert IN OUT`` console script: ``python -m ttsr_lightning.official convert IN OUT``."""
    main(["convert", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
