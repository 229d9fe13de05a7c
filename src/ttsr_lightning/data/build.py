"""Build a CUFED-shaped reference-based SR dataset from your own photographs.

    python -m ttsr_lightning.data.build <photos> <out>                  # or: ttsr-build <photos> <out>
    python -m ttsr_lightning.data.build <photos> <out> --patch-size 64 --workers 8
    python -m ttsr_lightning.data.prepare cufed <out>/CUFED/train          # checks pass on the result
    python -m ttsr_lightning data=cufed5 paths.data_dir=<out>              # train on it, test L1 .. L5

<photos>: a folder of photographs (any size and format Pillow reads), optionally in sub-folders, one per
album. <out>: a new folder, written whole or not at all; <out>/CUFED/train holds the training pairs,
<out>/CUFED/test/CUFED5 the test groups with references L1 (most matched local features) .. L5,
<out>/manifest.json every choice, <out>/report.txt one line per photo left out. A build that is killed
continues where it stopped when run again. How the references are chosen: ``photo_dataset.py``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from ttsr_lightning.cli import reported_errors
from ttsr_lightning.config_paths import cores_up_to
from ttsr_lightning.data.photo_dataset import SPLITS, BuildSettings, build_photo_dataset, option

MAX_DEFAULT_WORKERS = 16
HELP = {
    "patch_size": "side of the training HR crops and their references, px (CUFED: 160)",
    "photo_size": "every photo is first shrunk to this longer side, px; test images are whole photos "
    "(CUFED5: at most 500)",
    "match_size": "longer side of the grey copies SIFT matches on, px",
    "max_features": "SIFT keypoints kept per photo, the strongest (0: all)",
    "ratio": "Lowe's ratio test: a match's nearest descriptor is closer than this times the second",
    "min_matches": "fewest matches for a reference (a training pair: inside both crops)",
    "crops_per_photo": "training HR crops per training photo, where it matches most, not overlapping",
    "test_fraction": "share of the albums (or photos, --split-by photo) held out for testing",
    "split_by": "what is held out for testing: whole albums, or single photos",
    "groups_per_album": "test groups per test album (CUFED5: one)",
    "max_candidates": "most photos a photo is matched against from its album, and from the whole side",
    "max_pixels": "most pixels a photo may decode to (memory: about workers x this x 4 bytes)",
    "seed": "seed of the split and of the sampled candidates",
    "workers": f"worker processes (default: the cores this process may use, at most {MAX_DEFAULT_WORKERS})",
}


def parse_arguments(argv: Sequence[str] | None) -> tuple[Path, Path, BuildSettings]:
    """(photos, out, settings) from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m ttsr_lightning.data.build",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("photos", type=Path, help="folder of photographs, sub-folders as albums")
    parser.add_argument("out", type=Path, help="the dataset folder to create (must not exist)")
    defaults = BuildSettings(workers=cores_up_to(MAX_DEFAULT_WORKERS))
    for field in fields(BuildSettings):
        default = getattr(defaults, field.name)
        parser.add_argument(
            option(field.name),
            type=type(default),
            default=default,
            choices=SPLITS if field.name == "split_by" else None,
            help=f"{HELP[field.name]} (default: {default})",
        )
    args = parser.parse_args(argv)
    settings = BuildSettings(**{field.name: getattr(args, field.name) for field in fields(BuildSettings)})
    return args.photos, args.out, settings


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0: built)."""
    photos, out, settings = parse_arguments(argv)
    with reported_errors():
        result = build_photo_dataset(photos, out, settings)
    counts = result.manifest["counts"]
    for line in result.report:
        print(f"left out: {line}", file=sys.stderr)
    levels = " > ".join(
        f"{name} {value['mean_matches']:g}" for name, value in result.manifest["levels"].items()
    )
    print(
        f"built {out}: {counts['train_pairs']} training pairs, {counts['test_groups']} test groups "
        f"(mean matches {levels}); {counts['left_out']} of {counts['files']} files left out "
        f"({out / 'report.txt'}); every choice in {out / 'manifest.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
