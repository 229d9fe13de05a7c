"""Your own photographs as a reference-based SR dataset shaped like CUFED (training pairs) and CUFED5
(test groups with references of decreasing similarity): what ``python -m ttsr_lightning.data.build``
runs.

The input is a folder of photographs of any size, in any format Pillow reads, optionally in
sub-folders: an album is the folder holding its photos (as CUFED's events are), a photo directly in
the input folder has none. Hidden files and folders are skipped; every other file is a photo, and
one that is not usable gets a line in the report. The output folder ``out``::

    out/CUFED/train/input/NNNNN.png     HR crops, patch_size x patch_size (160 by default)
    out/CUFED/train/ref/NNNNN.png       each one's reference: a crop as large of another photo
    out/CUFED/test/CUFED5/NNN_0.png     a test image: a whole photo
    out/CUFED/test/CUFED5/NNN_1..5.png  its references L1 (most matches) .. L5: other whole photos
    out/manifest.json                   every choice: source photos, crop boxes, match counts, levels,
                                        albums, and every photo left out with its reason
    out/report.txt                      one line per photo left out (unreadable, too small, duplicate,
                                        no matching candidate, not needed by any test group)
    out/PROVENANCE.md                   how it was built: settings, versions, counts

so ``paths.data_dir=out`` serves ``data=cufed``, ``data=cufed5`` and ``data=photos`` as it is. Every
photo is first shrunk to ``photo_size`` pixels on its longer side (500 by default, CUFED5's size; never
enlarged): crops and test images are cut from that copy, and box coordinates are in its pixels.

How the references are chosen (``reference_choice.py``, ``feature_matching.py``): albums (or photos,
``split_by="photo"``) are split into training and test with the seed; a photo's candidates are the
other photos of its album on its side, else photos of the whole side; they are ranked by their SIFT
matches (mutual nearest neighbours that pass the ratio test) on grey copies of ``match_size`` pixels.
A training photo gives up to ``crops_per_photo`` HR crops where its best candidate matches most; a
test album gives up to ``groups_per_album`` groups. A photo whose candidates do not match is reported,
never paired with an unrelated one.

Stages, each over every photo with ``workers`` processes (peak memory: about ``workers`` decoded
photos of at most ``max_pixels`` pixels) and a progress bar: examine (decode, size, content hash,
features), match (candidates, training crops), write. Everything a stage computes is kept in the work
folder ``<out's parent>/.<out's name>.work/`` (``features/``, ``matches/``, ``staging-<plan>/``), one
file per photo or output image, each written atomically and named by what it depends on: a build
that was killed continues where it stopped, and gives the same bytes as one that was not. The output
is written into the staging folder and renamed to ``out`` in one step, so ``out`` is either absent or
complete; the work folder is removed at the end. The same photos and settings give the same output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import PIL
from PIL import Image
from tqdm import tqdm

from ttsr_lightning.data.errors import DatasetLayoutError, ImageError
from ttsr_lightning.data.feature_matching import (
    DETECTOR,
    Features,
    match_features,
    photo_features,
    single_threaded,
)
from ttsr_lightning.data.image_io import RGBImageReader, image_size, save_image
from ttsr_lightning.data.preprocessing import SCALE
from ttsr_lightning.data.reference_choice import (
    LEVELS,
    Candidate,
    MatchedCandidate,
    candidate_pools,
    choose_levels,
    choose_training_crops,
    ranked_distinct,
    split_units,
)
from ttsr_lightning.data.seeding import build_generator
from ttsr_lightning.errors import ConfigError
from ttsr_lightning.files import (
    RunFolderLock,
    atomic_write,
    fsync_folder,
    remove_unfinished_writes,
    write_json,
    write_text,
)
from ttsr_lightning.provenance import git_commit

FORMAT = "ttsr-lightning photo dataset, version 1"
DATASET = "photos"
SPLITS = ("album", "photo")
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class BuildSettings:
    """What the builder does; each field is the command-line option ``--<field with dashes>``."""

    patch_size: int = 160
    photo_size: int = 500
    match_size: int = 320
    max_features: int = 2000
    ratio: float = 0.75
    min_matches: int = 16
    crops_per_photo: int = 1
    test_fraction: float = 0.1
    split_by: str = "album"
    groups_per_album: int = 1
    max_candidates: int = 50
    max_pixels: int = 50_000_000
    seed: int = 0
    # not part of the output: any number of workers builds the same dataset
    workers: int = 1

    def check(self) -> None:
        """ConfigError naming the option of the first impossible setting."""
        at_least_one = (
            "photo_size", "match_size", "min_matches", "crops_per_photo", "groups_per_album",
            "max_candidates", "max_pixels", "workers",
        )  # fmt: skip
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise ConfigError(f"{option(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("max_features", "seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{option(name)} must be >= 0, got {getattr(self, name)}")
        if self.patch_size <= 0 or self.patch_size % SCALE:
            raise ConfigError(f"--patch-size must be a positive multiple of {SCALE}, got {self.patch_size}")
        if self.photo_size < self.patch_size:
            raise ConfigError(
                f"--photo-size ({self.photo_size}) must be at least --patch-size ({self.patch_size}): "
                "the crops are cut from photos of that size"
            )
        if not 0 < self.ratio < 1:
            raise ConfigError(f"--ratio must lie in (0, 1) (Lowe's ratio test), got {self.ratio}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"--test-fraction must lie in (0, 1), got {self.test_fraction}")
        if self.split_by not in SPLITS:
            raise ConfigError(f"--split-by must be one of {list(SPLITS)}, got {self.split_by!r}")

    def recorded(self) -> dict[str, Any]:
        """The settings the output depends on (all but ``workers``)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "workers"}


def option(name: str) -> str:
    """The command-line option of a ``BuildSettings`` field."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Photo:
    """A photo of the collection after examination: its path relative to the input folder (POSIX),
    its album (``None``: none), ``problem`` (why it cannot be used) or its size and content hash."""

    path: str
    album: str | None
    key: str
    problem: str | None = None
    size: tuple[int, int] = (0, 0)
    original_size: tuple[int, int] = (0, 0)
    sha256: str = ""


@dataclass(frozen=True)
class BuildResult:
    """The finished dataset: its folder, manifest and report lines (one per photo left out)."""

    out: Path
    manifest: dict[str, Any]
    report: list[str]


def work_folder(out: Path) -> Path:
    """Where a build into ``out`` keeps what it has computed (removed when it is done)."""
    return out.parent / f".{out.name}.work"


def build_photo_dataset(photos: Path, out: Path, settings: BuildSettings) -> BuildResult:
    """Builds the dataset of the photos under ``photos`` into ``out`` (which must not exist yet)."""
    settings.check()
    _check_folders(photos, out)
    work = work_folder(out)
    work.mkdir(parents=True, exist_ok=True)
    with RunFolderLock(work, key=str(out)):
        # the lock is ours: every process of an earlier build is gone (its workers shared its lock), also
        # one the system has not reaped yet, so each temporary file left here is a killed writer's
        remove_unfinished_writes([work], recursive=True, writers_gone=True)
        single_threaded()
        examined = _map(
            _examine,
            [(photos, path, album, settings, work) for path, album in scan_collection(photos)],
            settings.workers,
            "photos: examine",
        )
        if not examined:
            raise DatasetLayoutError(DATASET, [f"{photos}: no files found; expected photographs"])
        plan = _plan(photos, examined, settings, work)
        staging = work / f"staging-{plan.digest()[:16]}"
        for stale in work.glob("staging-*"):
            if stale != staging:  # an earlier build's, with other photos or settings
                shutil.rmtree(stale)
        writes: list[tuple[str, Any, Path, Path, BuildSettings]] = [
            *(("train", item, photos, staging, settings) for item in plan.train),
            *(("test", item, photos, staging, settings) for item in plan.test),
        ]
        _map(_write_images, writes, settings.workers, "photos: write", unit="item")
        write_json(staging / "manifest.json", plan.manifest)
        write_text(staging / "report.txt", "".join(f"{line}\n" for line in plan.report))
        write_text(staging / "PROVENANCE.md", _provenance(plan.manifest))
        os.rename(staging, out)  # out appears whole, or not at all
        fsync_folder(out.parent)
    shutil.rmtree(work, ignore_errors=True)
    return BuildResult(out, plan.manifest, plan.report)


def read_manifest(out: Path) -> dict[str, Any]:
    """The manifest of the dataset built into ``out``; DatasetLayoutError naming the file otherwise."""
    path = out / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetLayoutError(
            DATASET, [f"{path}: cannot read it ({exc}); expected the manifest of a built dataset"]
        ) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DatasetLayoutError(
            DATASET, [f"{path}: not a manifest of this builder; expected format {FORMAT!r}"]
        )
    return manifest


def _check_folders(photos: Path, out: Path) -> None:
    if not photos.is_dir():
        raise DatasetLayoutError(DATASET, [f"{photos}: folder not found; expected a folder of photographs"])
    if out.resolve().is_relative_to(photos.resolve()):
        raise ConfigError(f"{out}: the output lies inside the photo folder {photos}; choose a folder outside")
    if out.exists():
        with contextlib.suppress(OSError):  # a finished build killed before it removed its work folder
            if (out / "manifest.json").is_file():
                shutil.rmtree(work_folder(out))
        raise ConfigError(
            f"{out}: already exists; the builder writes a new folder (delete it or choose another)"
        )


def scan_collection(photos: Path) -> list[tuple[str, str | None]]:
    """(path relative to ``photos``, album) of every visible file below it, sorted; the album is the
    folder holding the file, relative to ``photos`` (``None`` directly inside it)."""
    found = []
    for folder, subfolders, files in os.walk(photos):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        relative = Path(folder).relative_to(photos).as_posix()
        album = None if relative == "." else relative
        for name in sorted(files):
            if not name.startswith("."):
                found.append(((Path(relative) / name).as_posix() if album else name, album))
    return sorted(found)


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _map(
    function: Callable[[_T], _R], tasks: Sequence[_T], workers: int, description: str, unit: str = "photo"
) -> list[_R]:
    """``[function(task) for task in tasks]`` in ``workers`` processes, in order, with a progress bar."""
    with contextlib.ExitStack() as stack:
        if workers <= 1 or len(tasks) <= 1:
            results: Iterable[_R] = map(function, tasks)
        else:
            context = multiprocessing.get_context()
            pool = stack.enter_context(context.Pool(min(workers, len(tasks)), initializer=single_threaded))
            results = pool.imap(function, tasks)
        return list(tqdm(results, total=len(tasks), desc=description, unit=unit, leave=False))


# -- stage 1: examine every photo (in a worker) -----------------------------------------------------


def _examine(task: tuple[Path, str, str | None, BuildSettings, Path]) -> Photo:
    photos, path, album, settings, work = task
    file = photos / path
    stat = file.stat()
    key = _digest(
        str(file.resolve()), stat.st_size, stat.st_mtime_ns, settings.photo_size, settings.max_pixels,
        settings.match_size, settings.max_features,
    )  # fmt: skip
    cache = work / "features" / f"{key}.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            return Photo(album=album, **_photo_fields(json.loads(str(stored["photo"]))))
    try:
        original_size = image_size(file)
        image = RGBImageReader(DATASET).read(file, settings.photo_size, settings.max_pixels)
    except ImageError as exc:
        photo = Photo(path, album, key, problem="unreadable: " + str(exc).removeprefix(f"{file}: "))
        features = Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
    else:
        content = hashlib.sha256(f"{image.size}".encode() + image.tobytes()).hexdigest()
        photo = Photo(path, album, key, size=image.size, original_size=original_size, sha256=content)
        features = photo_features(image, settings.match_size, settings.max_features)
    fields = {k: v for k, v in dataclasses.asdict(photo).items() if k != "album"}
    atomic_write(
        cache,
        lambda handle: np.savez(
            handle,
            photo=np.array(json.dumps(fields)),
            points=features.points,
            descriptors=features.descriptors,
        ),
    )
    return photo


def _photo_fields(fields: dict[str, Any]) -> dict[str, Any]:
    return {**fields, "size": tuple(fields["size"]), "original_size": tuple(fields["original_size"])}


def _features(work: Path, key: str) -> Features:
    with np.load(work / "features" / f"{key}.npz") as stored:
        return Features(stored["points"], stored["descriptors"])


# -- stage 2: match every usable photo against its candidates (in a worker) ----------------------


@dataclass(frozen=True)
class _MatchTask:
    photo: Photo
    role: str  # "train" or "test"
    pools: tuple[tuple[str, tuple[Photo, ...]], ...]  # (origin, candidates), tried in turn
    settings: BuildSettings
    work: Path

    def key(self) -> str:
        s = self.settings
        pools = [(origin, [c.key for c in candidates]) for origin, candidates in self.pools]
        return _digest(
            self.photo.key, self.role, pools, s.ratio, s.min_matches, s.patch_size, s.crops_per_photo
        )


def _match(task: _MatchTask) -> dict[str, Any]:
    """{"candidates": [[photo, origin, matches]], "crops": [...] (training photos)}."""
    cache = task.work / "matches" / f"{task.key()}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    settings, query = task.settings, _features(task.work, task.photo.key)
    matched: list[MatchedCandidate] = []
    for origin, candidates in task.pools:
        for candidate in candidates:
            features = _features(task.work, candidate.key)
            pairs = match_features(query, features, settings.ratio)
            matched.append(
                MatchedCandidate(
                    Candidate(candidate.path, origin, len(pairs)), pairs, features.points, candidate.size
                )
            )
        found = [m.candidate for m in matched]
        if task.role == "train" and any(c.matches >= settings.min_matches for c in found):
            break
        if task.role == "test" and len(ranked_distinct(found, settings.min_matches)) >= LEVELS:
            break
    result: dict[str, Any] = {"candidates": [list(m.candidate) for m in matched]}
    if task.role == "train":
        crops = choose_training_crops(
            query.points, task.photo.size, matched, settings.patch_size, settings.crops_per_photo,
            settings.min_matches,
        )  # fmt: skip
        result["crops"] = [
            {"hr_box": list(c.hr_box), "ref": list(c.ref), "ref_box": list(c.ref_box), "matches": c.matches}
            for c in crops
        ]
    write_json(cache, result)
    return result


# -- the plan: who is left out, the split, the pairs and groups, the manifest -----------------------


@dataclass(frozen=True)
class _Plan:
    manifest: dict[str, Any]
    report: list[str]
    # per training photo: (HR photo, [(name, HR box, reference photo, reference box)]); per test group:
    # (name, [HR photo, L1 .. L5 photos])
    train: list[tuple[str, list[tuple[str, list[int], str, list[int]]]]]
    test: list[tuple[str, list[str]]]

    def digest(self) -> str:
        return _digest(self.manifest)


def _plan(photos: Path, examined: list[Photo], settings: BuildSettings, work: Path) -> _Plan:
    left_out, usable = _usable(examined, settings)
    units = sorted({_unit(photo, settings) for photo in usable})
    if len(units) < 2:
        raise DatasetLayoutError(
            DATASET,
            [
                f"{photos}: {len(usable)} usable photo(s) in {len(units)} {settings.split_by}(s); expected "
                "at least two to split into training and test (--split-by photo splits one album)",
                *_report(left_out),
            ],
        )
    test_units = split_units(units, settings.test_fraction, settings.seed)
    side = {photo.path: "test" if _unit(photo, settings) in test_units else "train" for photo in usable}
    tasks = _match_tasks(usable, side, settings, work)
    results = _map(_match, tasks, settings.workers, "photos: match")
    matched = {task.photo.path: result for task, result in zip(tasks, results, strict=True)}
    train = _training_pairs(usable, side, matched)
    test = _test_groups(usable, side, matched, settings)
    used = {path for pair in train for path in (pair["hr"]["photo"], pair["ref"]["photo"])}
    used |= {
        path for group in test for path in (group["hr"]["photo"], *(r["photo"] for r in group["references"]))
    }
    for photo in usable:
        if photo.path not in used:
            left_out[photo.path] = _unused_reason(matched[photo.path], side[photo.path], settings)
    if not train or not test:
        what = "training pair" if not train else "test group"
        raise DatasetLayoutError(
            DATASET,
            [
                f"{photos}: no {what} could be made (more photos per album, or a lower --min-matches, may "
                "help); the photos left out:",
                *_report(left_out),
            ],
        )
    train_width, test_width = max(5, len(str(len(train) - 1))), max(3, len(str(len(test) - 1)))
    by_hr: dict[str, list[tuple[str, list[int], str, list[int]]]] = {}
    for index, pair in enumerate(train):
        name = f"{index:0{train_width}d}"
        train[index] = {
            "input": f"CUFED/train/input/{name}.png",
            "ref_file": f"CUFED/train/ref/{name}.png",
            **pair,
        }
        by_hr.setdefault(pair["hr"]["photo"], []).append(
            (name, pair["hr"]["box"], pair["ref"]["photo"], pair["ref"]["box"])
        )
    groups = []
    for index, group in enumerate(test):
        name = f"{index:0{test_width}d}"
        group["hr"] = {"file": f"CUFED/test/CUFED5/{name}_0.png", **group["hr"]}
        group["references"] = [
            {"file": f"CUFED/test/CUFED5/{name}_{reference['level']}.png", **reference}
            for reference in group["references"]
        ]
        test[index] = {"group": name, **group}
        groups.append((name, [group["hr"]["photo"], *(r["photo"] for r in group["references"])]))
    manifest = {
        "format": FORMAT,
        "photos": str(photos.resolve()),
        "settings": settings.recorded(),
        "matching": _matching_note(settings),
        "versions": _versions(),
        "counts": {
            "files": len(examined),
            "usable": len(usable),
            "train_photos": sum(s == "train" for s in side.values()),
            "test_photos": sum(s == "test" for s in side.values()),
            "train_pairs": len(train),
            "test_groups": len(test),
            "left_out": len(left_out),
        },
        "test_units": sorted(test_units),
        "levels": _level_summary(test),
        "train": train,
        "test": test,
        "left_out": [{"photo": path, "reason": reason} for path, reason in sorted(left_out.items())],
    }
    return _Plan(manifest, _report(left_out), list(by_hr.items()), groups)


def _usable(examined: list[Photo], settings: BuildSettings) -> tuple[dict[str, str], list[Photo]]:
    """(photo -> why it is left out, the usable photos): unreadable, too small, duplicates out."""
    left_out: dict[str, str] = {}
    usable: list[Photo] = []
    first_of: dict[str, str] = {}
    patch = settings.patch_size
    for photo in examined:
        if photo.problem is not None:
            left_out[photo.path] = photo.problem
        elif min(photo.size) < patch:
            width, height = photo.original_size
            shrunk = "" if photo.size == photo.original_size else f", {photo.size[0]}x{photo.size[1]} shrunk"
            left_out[photo.path] = (
                f"too small: {width}x{height} px{shrunk}; expected at least {patch} px on each side "
                f"(--patch-size {patch}, --photo-size {settings.photo_size})"
            )
        elif photo.sha256 in first_of:
            left_out[photo.path] = f"duplicate of {first_of[photo.sha256]} (the same pixels)"
        else:
            first_of[photo.sha256] = photo.path
            usable.append(photo)
    return left_out, usable


def _unit(photo: Photo, settings: BuildSettings) -> str:
    """What the split holds out: the photo's album (a photo without one is its own unit), or the photo."""
    if settings.split_by == "album" and photo.album is not None:
        return f"album {photo.album}"
    return f"photo {photo.path}"


def _match_tasks(
    usable: list[Photo], side: dict[str, str], settings: BuildSettings, work: Path
) -> list[_MatchTask]:
    by_path = {photo.path: photo for photo in usable}
    on_side: dict[str, list[str]] = {}
    in_album: dict[tuple[str, str], list[str]] = {}
    for photo in usable:
        on_side.setdefault(side[photo.path], []).append(photo.path)
        if photo.album is not None:
            in_album.setdefault((side[photo.path], photo.album), []).append(photo.path)
    tasks = []
    for photo in usable:
        here = side[photo.path]
        album = in_album.get((here, photo.album), []) if photo.album is not None else []
        pools = candidate_pools(photo.path, album, on_side[here], settings.max_candidates, settings.seed)
        named = (
            ("album", tuple(by_path[path] for path in pools[0])),
            ("collection", tuple(by_path[path] for path in pools[1])),
        )
        tasks.append(_MatchTask(photo, here, named, settings, work))
    return tasks


def _training_pairs(
    usable: list[Photo], side: dict[str, str], matched: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    pairs = []
    for photo in usable:
        if side[photo.path] != "train":
            continue
        photo_matches = {path: count for path, _, count in matched[photo.path]["candidates"]}
        for crop in matched[photo.path]["crops"]:
            ref_photo, origin, _ = crop["ref"]
            pairs.append(
                {
                    "album": photo.album,
                    "hr": {"photo": photo.path, "box": crop["hr_box"]},
                    "ref": {"photo": ref_photo, "box": crop["ref_box"], "from": origin},
                    "matches": crop["matches"],
                    "photo_matches": photo_matches[ref_photo],
                }
            )
    return pairs


def _test_groups(
    usable: list[Photo], side: dict[str, str], matched: dict[str, dict[str, Any]], settings: BuildSettings
) -> list[dict[str, Any]]:
    """Up to ``groups_per_album`` groups per test album (a photo without album: its own), their HR photos
    tried in an order drawn with the seed; sorted by album and HR photo."""
    albums: dict[str, list[Photo]] = {}
    for photo in usable:
        if side[photo.path] == "test":
            albums.setdefault(photo.album if photo.album is not None else photo.path, []).append(photo)
    groups = []
    for album, members in sorted(albums.items()):
        found = 0
        for index in build_generator(settings.seed, "test", album).permutation(len(members)):
            photo = members[int(index)]
            levels = choose_levels(_candidates(matched[photo.path]), settings.min_matches)
            if levels is None:
                continue
            references = [
                {"level": level, "photo": c.photo, "from": c.origin, "matches": c.matches}
                for level, c in enumerate(levels, 1)
            ]
            groups.append(
                {
                    "album": photo.album,
                    "hr": {"photo": photo.path, "size": list(photo.size)},
                    "references": references,
                }
            )
            found += 1
            if found == settings.groups_per_album:
                break
    return sorted(groups, key=lambda group: (group["album"] or "", group["hr"]["photo"]))


def _candidates(result: dict[str, Any]) -> list[Candidate]:
    return [Candidate(*candidate) for candidate in result["candidates"]]


def _unused_reason(result: dict[str, Any], side: str, settings: BuildSettings) -> str:
    candidates, least = _candidates(result), settings.min_matches
    best = max((c.matches for c in candidates), default=0)
    among = f"best {best} among {len(candidates)} candidate(s); --min-matches {least}"
    if best < least:
        return f"no matching candidate ({among})"
    if side == "train":
        patch = settings.patch_size
        return (
            f"no training pair: no {patch}x{patch} crop has {least} matches inside it and inside its "
            f"reference crop ({among})"
        )
    distinct = len(ranked_distinct(candidates, least))
    if distinct < LEVELS:
        return (
            f"no test group: {distinct} candidate(s) with distinct match counts of at least {least}, "
            f"{LEVELS} needed"
        )
    return (
        f"not needed: its album has its {settings.groups_per_album} test group(s) (--groups-per-album) and "
        "no group took it as a reference"
    )


def _report(left_out: dict[str, str]) -> list[str]:
    return [f"{path}: {reason}" for path, reason in sorted(left_out.items())]


def _level_summary(test: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    summary = {}
    for level in range(1, LEVELS + 1):
        counts = [group["references"][level - 1]["matches"] for group in test]
        summary[f"L{level}"] = {
            "mean_matches": round(sum(counts) / len(counts), 2),
            "min": min(counts),
            "max": max(counts),
        }
    return summary


def _matching_note(settings: BuildSettings) -> str:
    features = f"the {settings.max_features} strongest" if settings.max_features else "every"
    return (
        f"{DETECTOR} {settings.ratio}: {features} keypoint(s) of a grey copy of each photo at most "
        f"{settings.match_size} px on its longer side (the photo itself at most {settings.photo_size} px)"
    )


def _versions() -> dict[str, str]:
    try:
        package = metadata.version("ttsr-lightning")
    except metadata.PackageNotFoundError:
        package = "?"
    return {
        "ttsr-lightning": package,
        "opencv": cv2.__version__,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
    }


# -- stage 3: write the images (in a worker) ---------------------------------------------------------


def _write_images(task: tuple[str, Any, Path, Path, BuildSettings]) -> None:
    kind, item, photos, staging, settings = task
    reader = RGBImageReader(DATASET)

    def read(path: str) -> Image.Image:
        return reader.read(photos / path, settings.photo_size, settings.max_pixels)

    if kind == "train":
        hr_photo, crops = item
        targets = [
            staging / "CUFED" / "train" / folder / f"{crop[0]}.png"
            for crop in crops
            for folder in ("input", "ref")
        ]
        if all(target.is_file() for target in targets):
            return
        hr = read(hr_photo)
        for name, hr_box, ref_photo, ref_box in crops:
            save_image(hr.crop(tuple(hr_box)), staging / "CUFED" / "train" / "input" / f"{name}.png")
            save_image(
                read(ref_photo).crop(tuple(ref_box)), staging / "CUFED" / "train" / "ref" / f"{name}.png"
            )
    else:
        name, members = item
        for member, path in enumerate(members):
            target = staging / "CUFED" / "test" / "CUFED5" / f"{name}_{member}.png"
            if not target.is_file():
                save_image(read(path), target)


def _provenance(manifest: dict[str, Any]) -> str:
    settings, counts, levels = manifest["settings"], manifest["counts"], manifest["levels"]
    patch = settings["patch_size"]
    level_line = " > ".join(f"{name} {value['mean_matches']:g}" for name, value in levels.items())
    return "\n".join(
        [
            f"# {FORMAT}",
            "",
            f"Built by `python -m ttsr_lightning.data.build` (ttsr-lightning, commit {git_commit()}) from "
            f"the photographs in `{manifest['photos']}`; their owners' rights and licences apply to every "
            "image here.",
            "",
            f"- training: {counts['train_pairs']} pairs of {patch}x{patch} crops from "
            f"{counts['train_photos']} photos (`CUFED/train/input`, `CUFED/train/ref`, paired by file name)",
            f"- test: {counts['test_groups']} CUFED5-style groups from {counts['test_photos']} photos "
            "(`CUFED/test/CUFED5/NNN_0..5.png`: the HR and its references L1 .. L5)",
            f"- references: candidates from the same album (else the whole side), ranked by matched local "
            f"features: {manifest['matching']}; levels by rank of the match count, mean matches {level_line}",
            f"- left out: {counts['left_out']} of {counts['files']} files (`report.txt`, one line each)",
            f"- split: {len(manifest['test_units'])} {settings['split_by']}(s) held out for testing with "
            f"seed {settings['seed']}; no photo is in both training and test",
            f"- settings: {', '.join(f'{option(k)} {v}' for k, v in settings.items())}",
            f"- versions: {', '.join(f'{k} {v}' for k, v in manifest['versions'].items())}",
            "",
            "Every choice (source photo, crop box in the photo shrunk to at most --photo-size px, match "
            "counts, level, album) is in `manifest.json`.",
            "",
        ]
    )
