"""Your own photos as a dataset, shown on real photographs: scikit-image's, each cut into an album.

    python experiments/own_photos.py collection <photos>        # write the photo collection
    python experiments/own_photos.py report <dataset> <run>...   # levels, runs, the picture of a group

``collection`` writes a folder of photographs as a user would have them: one sub-folder (album) per
scikit-image photograph (the sample set's, ``ttsr_lightning.data.sample.PHOTOS``; the motorcycle's two
stereo views share an album), each holding ``--per-album`` "shots" of its scene: crops of 45-70% of each
side at drawn positions, shrunk to 200-280 px on the longer side, saved as JPEG or PNG in turn. It
adds three files the builder must leave out with one report line each: a truncated JPEG, a thumbnail
smaller than any training crop and a byte-for-byte copy of another photo.

``report`` reads a built dataset's manifest and the runs trained on it (their ``results.json``) and
prints the mean match count per level and each run's CUFED5 PSNR per level beside LR-as-reference; with
``--figure`` it draws one test group (the HR and its five references, labelled with level and match
count).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from ttsr_lightning.data.sample import PHOTOS, load_photos  # noqa: E402
from ttsr_lightning.files import save_figure  # noqa: E402
from ttsr_lightning.markdown import markdown_table  # noqa: E402

SEED = 2020
ALBUMS = {name: [name] for name in PHOTOS if not name.startswith("motorcycle")}
ALBUMS["motorcycle"] = ["motorcycle_left", "motorcycle_right"]
CROP_FRACTION = (0.45, 0.7)
LONGER_SIDE = (200, 280)


def write_collection(folder: Path, per_album: int = 12, albums: Sequence[str] = tuple(ALBUMS)) -> list[Path]:
    """Writes the albums' photos (and the three bad files) into ``folder``; returns every file written."""
    photos = load_photos()
    rng = np.random.default_rng(SEED)
    written = []
    for album in albums:
        views = ALBUMS[album]
        for shot in range(per_album):
            source = photos[views[shot % len(views)]]
            width, height = (round(side * rng.uniform(*CROP_FRACTION)) for side in source.size)
            left = int(rng.integers(0, source.width - width + 1))
            top = int(rng.integers(0, source.height - height + 1))
            longer = int(rng.integers(LONGER_SIDE[0], LONGER_SIDE[1] + 1))
            ratio = longer / max(width, height)
            image = source.crop((left, top, left + width, top + height)).resize(
                (round(width * ratio), round(height * ratio)), Image.Resampling.LANCZOS
            )
            path = folder / album / f"{album}_{shot:02d}.{'jpg' if shot % 2 else 'png'}"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path, quality=92) if path.suffix == ".jpg" else image.save(path)
            written.append(path)
    first, second = written[1], written[per_album + 1]  # JPEGs of the first two albums
    truncated = first.with_name("truncated.jpg")
    truncated.write_bytes(first.read_bytes()[:2000])
    thumbnail = second.with_name("thumbnail.png")
    with Image.open(second) as image:
        image.resize((48, 36), Image.Resampling.LANCZOS).save(thumbnail)
    copy = second.with_name(f"copy_of_{second.name}")
    copy.write_bytes(second.read_bytes())
    return [*written, truncated, thumbnail, copy]


def level_table(manifest: dict) -> list[str]:
    """Markdown rows: the mean, smallest and largest match count of each level."""
    cells = [
        (level, f"{values['mean_matches']:.1f}", values["min"], values["max"])
        for level, values in manifest["levels"].items()
    ]
    return markdown_table(("level", "mean matches", "min", "max"), cells, "-rrr", dashes=3).splitlines()


def run_table(runs: Sequence[Path]) -> list[str]:
    """Markdown rows: each run's seed and CUFED5 PSNR per level and with the LR as its own reference."""
    levels = ("L1", "L2", "L3", "L4", "L5", "LR")
    cells = []
    for run in runs:
        results = json.loads((run / "results.json").read_text())
        config = json.loads((run / "run.json").read_text())
        psnr = {level: _psnr(results, f"CUFED5_{level}") for level in levels}
        margin = f"{psnr['L1'] - psnr['LR']:+.3f}"
        cells.append((f"{run} ({config['seed']})", *(f"{psnr[level]:.3f}" for level in levels), margin))
    header = ("run (seed)", *levels, "L1 - LR")
    return markdown_table(header, cells, "-" + "r" * (len(levels) + 1), dashes=3).splitlines()


def _psnr(results: dict, set_name: str) -> float:
    for entry in results["sets"]:
        if entry["set"] == set_name:
            return float(entry["psnr"])
    raise KeyError(f"results.json: no set {set_name}")


def draw_group(dataset: Path, manifest: dict, group_index: int, path: Path) -> None:
    """The HR of one test group and its references L1 .. L5, each titled with its match count."""
    group = manifest["test"][group_index]
    panels = [(group["hr"]["file"], f"HR (test image)\n{group['hr']['photo']}")]
    panels += [
        (r["file"], f"L{r['level']}: {r['matches']} matches\n{r['photo']}") for r in group["references"]
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.0))
    for axis, (file, title) in zip(axes, panels, strict=True):
        with Image.open(dataset / file) as image:
            axis.imshow(np.asarray(image.convert("RGB")))
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    figure.suptitle(
        f"test group {group['group']} (album {group['album']}): references ranked by matched SIFT features",
        fontsize=10,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    save_figure(path, figure)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    collection = commands.add_parser("collection", help="write the photo collection")
    collection.add_argument("folder", type=Path)
    collection.add_argument("--per-album", type=int, default=12)
    report = commands.add_parser("report", help="levels and runs of a built dataset")
    report.add_argument("dataset", type=Path)
    report.add_argument("runs", type=Path, nargs="*")
    report.add_argument("--figure", type=Path, help="draw test group --group here (PNG)")
    report.add_argument("--group", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "collection":
        if args.folder.exists():
            print(f"error: {args.folder} already exists; choose a new folder", file=sys.stderr)
            return 2
        files = write_collection(args.folder, args.per_album)
        print(f"wrote {len(files)} files into {args.folder}")
        return 0
    manifest = json.loads((args.dataset / "manifest.json").read_text())
    print("\n".join(level_table(manifest)))
    if args.runs:
        print()
        print("\n".join(run_table(args.runs)))
    if args.figure:
        draw_group(args.dataset, manifest, args.group, args.figure)
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
