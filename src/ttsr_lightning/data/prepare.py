"""Check a downloaded dataset (layout, counts, every image), or build the embedded sample set.

    python -m ttsr_lightning.data.prepare cufed    data/CUFED/train         # input/ + ref/, 11,871 pairs
    python -m ttsr_lightning.data.prepare cufed5   data/CUFED/test/CUFED5   # 126 groups NNN_0..5
    python -m ttsr_lightning.data.prepare sun80    data/Sun80               # 80 images + scene matches
    python -m ttsr_lightning.data.prepare urban100 data/Urban100            # 100 HR images
    python -m ttsr_lightning.data.prepare manga109 data/Manga109            # 109 HR images
    python -m ttsr_lightning.data.prepare wrsr     data/WR-SR               # 80 images + 80 references
    python -m ttsr_lightning.data.prepare sample   data/sample              # builds data/sample/CUFED
    python -m ttsr_lightning.data.prepare photos   data/my_photos_dataset   # built by data.build

A check reads every image the way training and testing will (decoding, colour mode, sizes), prints
every problem it finds and exits with status 1; it never writes anything. A count that differs from the
released dataset's is a note, not a problem: a subset, or a dataset of your own laid out the same way
(``data.build`` writes one; ``--patch-size`` for training images smaller than CUFED's 160), is checked
the same way. ``sample`` writes: it builds
the embedded sample set in the folder (when it is not there yet; see ``sample.py``), then checks it.
``photos`` checks a dataset built from your photographs by ``python -m ttsr_lightning.data.build``: its
training pairs and test groups, counted and sized as its ``manifest.json`` says.
The expected layouts are in the docstrings of ``cufed.py``, ``cufed5.py``, ``sun80.py``,
``urban100.py``, ``manga109.py`` and ``wrsr.py``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from ttsr_lightning.cli import reported_errors
from ttsr_lightning.data.cufed import CUFEDTrainDataset
from ttsr_lightning.data.cufed5 import CUFED5Dataset, find_cufed5_groups
from ttsr_lightning.data.errors import DatasetLayoutError, ImageError
from ttsr_lightning.data.eval_dataset import EvalDataset
from ttsr_lightning.data.image_io import RGBImageReader
from ttsr_lightning.data.inspection import subset_note
from ttsr_lightning.data.manga109 import Manga109Dataset
from ttsr_lightning.data.photo_dataset import read_manifest
from ttsr_lightning.data.sample import PATCH as SAMPLE_PATCH
from ttsr_lightning.data.sample import build_sample_dataset
from ttsr_lightning.data.sun80 import Sun80Dataset
from ttsr_lightning.data.urban100 import Urban100Dataset
from ttsr_lightning.data.wrsr import WRSRDataset
from ttsr_lightning.files import remove_unfinished_writes

# The released datasets this command checks, by the name of their released set (inspection.FULL_SIZES:
# a count that differs from the release's is a note, not a problem: a subset or a dataset of one's own,
# laid out the same way, is checked the same way)
RELEASED = {
    "cufed": "CUFED",
    "cufed5": "CUFED5",
    "sun80": "Sun80",
    "urban100": "Urban100",
    "manga109": "Manga109",
    "wrsr": "WR-SR",
}
DATASETS = (*RELEASED, "sample", "photos")
CUFED_PATCH = 160  # the official training patch: CUFED's training images are 160x160


def _open(
    dataset: str, folder: Path, pattern: str, patch_size: int
) -> tuple[CUFEDTrainDataset | EvalDataset, list[Path]]:
    """The dataset (layout validated) and the files none of its items reads (checked by decoding only)."""
    if dataset == "cufed":
        return CUFEDTrainDataset(folder, patch_size=patch_size, augment=False), []
    if dataset == "cufed5":
        cufed5 = CUFED5Dataset(folder, ref_level=1)
        levels_2_to_5 = [members[k] for members in find_cufed5_groups(folder).values() for k in range(2, 6)]
        return cufed5, levels_2_to_5
    if dataset == "sun80":
        sun80 = Sun80Dataset(folder)
        used = set(sun80.image_files())
        return sun80, [ref for refs in sun80.candidates.values() for ref in refs if ref not in used]
    if dataset == "urban100":
        return Urban100Dataset(folder, pattern=pattern), []
    if dataset == "wrsr":
        return WRSRDataset(folder), []
    return Manga109Dataset(folder, pattern=pattern), []


def check(
    dataset: str,
    folder: Path,
    pattern: str = "*.png",
    expected: int | None = None,
    patch_size: int = CUFED_PATCH,
) -> list[str]:
    """Every problem of ``dataset`` at ``folder`` (empty when it is ready to use); reads, never writes.
    ``patch_size``: the training patch a CUFED-shaped training set must hold (the sample's is smaller)."""
    try:
        items, other_files = _open(dataset, folder, pattern, patch_size)
    except DatasetLayoutError as exc:
        return exc.problems
    count = len(items)
    if expected is not None and count != expected:
        return [f"{folder}: found {count} {_unit(dataset)}; expected {expected} (is the download complete?)"]
    problems = []
    for index in tqdm(range(count), desc=f"{dataset}: items", unit="item", leave=False):
        try:
            items[index]
        except ImageError as exc:
            problems.append(str(exc))
    reader = RGBImageReader(dataset)
    for path in tqdm(other_files, desc=f"{dataset}: other files", unit="file", leave=False):
        try:
            reader.read(path)
        except ImageError as exc:
            problems.append(str(exc))
    return problems


def count_items(dataset: str, folder: Path, pattern: str = "*.png") -> int:
    """How many pairs, groups or images the dataset at ``folder`` holds (its layout must be valid)."""
    return len(_open(dataset, folder, pattern, patch_size=4)[0])


def _unit(dataset: str) -> str:
    return {"cufed": "pairs", "cufed5": "groups"}.get(dataset, "images")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 = ready to use)."""
    parser = argparse.ArgumentParser(
        prog="python -m ttsr_lightning.data.prepare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("dataset", choices=DATASETS)
    parser.add_argument("folder", type=Path, help="the dataset's folder (see the examples below)")
    parser.add_argument("--pattern", default="*.png", help="glob of the HR images (urban100, manga109)")
    parser.add_argument(
        "--patch-size",
        type=int,
        default=CUFED_PATCH,
        help="the training patch every cufed training HR must hold (default: CUFED's 160)",
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n")[1]
    args = parser.parse_args(argv)

    checks: list[tuple[str, Path, int | None, int]]
    if args.dataset == "sample":
        with reported_errors():  # e.g. a read-only folder: one line naming it
            try:
                remove_unfinished_writes([args.folder])
                root = build_sample_dataset(args.folder)
            except DatasetLayoutError as exc:
                print(exc, file=sys.stderr)
                return 1
        checks = [
            ("cufed", root / "train", None, SAMPLE_PATCH),
            ("cufed5", root / "test" / "CUFED5", None, CUFED_PATCH),
        ]
    elif args.dataset == "photos":
        with reported_errors():
            manifest = read_manifest(args.folder)
        checks = [
            (
                "cufed",
                args.folder / "CUFED" / "train",
                len(manifest["train"]),
                manifest["settings"]["patch_size"],
            ),
            ("cufed5", args.folder / "CUFED" / "test" / "CUFED5", len(manifest["test"]), CUFED_PATCH),
        ]
    else:
        checks = [(args.dataset, args.folder, None, args.patch_size)]
    status = 0
    for dataset, folder, expected, patch_size in checks:
        with reported_errors():
            problems = check(dataset, folder, args.pattern, expected, patch_size)
            if args.dataset in RELEASED and not problems:
                note = subset_note(
                    RELEASED[dataset], count_items(dataset, folder, args.pattern), _unit(dataset)
                )
                if note:
                    print(f"note: {note}")
        if problems:
            status = 1
            print(f"{dataset} at {folder}: {len(problems)} problem(s):", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
        else:
            print(f"{dataset} at {folder}: ready (layout, counts and every image checked)")
    return status


if __name__ == "__main__":
    sys.exit(main())
