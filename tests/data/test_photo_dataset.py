"""The dataset builder on real photographs (helpers/photo_collection.py): a CUFED / CUFED5-shaped tree
the checks accept, levels that fall in match count, train and test apart, one report line per bad
photo, an interrupted build that finishes with the same bytes, and nothing half-written."""

from __future__ import annotations

import dataclasses
import errno
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.photo_collection import BAD_FILES, PER_ALBUM, SETTINGS, tree_bytes
from ttsr_lightning.data import photo_dataset, prepare
from ttsr_lightning.data.errors import DatasetLayoutError
from ttsr_lightning.data.feature_matching import match_features, photo_features, single_threaded
from ttsr_lightning.data.image_io import RGBImageReader
from ttsr_lightning.data.photo_dataset import (
    BuildResult,
    BuildSettings,
    build_photo_dataset,
    scan_collection,
    work_folder,
)
from ttsr_lightning.data.prepare import check
from ttsr_lightning.errors import ConfigError


def photo(collection: Path, path: str) -> Image.Image:
    """A collection photo as the builder decodes it (shrunk to --photo-size)."""
    return RGBImageReader("test").read(collection / path, SETTINGS.photo_size, SETTINGS.max_pixels)


def test_the_tree_passes_the_cufed_and_cufed5_checks(
    built_photos: BuildResult, capsys: pytest.CaptureFixture[str]
) -> None:
    out, manifest = built_photos.out, built_photos.manifest
    assert check("cufed", out / "CUFED" / "train", expected=len(manifest["train"]), patch_size=64) == []
    assert check("cufed5", out / "CUFED" / "test" / "CUFED5", expected=len(manifest["test"])) == []
    # the command a user types: ready, with a note that these are not the released sets
    assert prepare.main(["cufed", str(out / "CUFED" / "train"), "--patch-size", "64"]) == 0
    assert prepare.main(["cufed5", str(out / "CUFED" / "test" / "CUFED5")]) == 0
    printed = capsys.readouterr().out
    assert printed.count(": ready (layout, counts and every image checked)") == 2
    assert f"note: CUFED: {len(manifest['train'])} pairs; the released set has 11,871" in printed
    assert manifest["counts"] == {
        "files": 4 * PER_ALBUM + 4,
        "usable": 4 * PER_ALBUM + 1,
        "train_photos": 3 * PER_ALBUM + 1,
        "test_photos": PER_ALBUM,
        "train_pairs": 21,
        "test_groups": 1,
        "left_out": 5,
    }
    assert manifest["test_units"] == ["album ihc"]
    assert sorted(path.name for path in out.iterdir()) == [
        "CUFED",
        "PROVENANCE.md",
        "manifest.json",
        "report.txt",
    ]
    assert not work_folder(out).exists()  # removed once the dataset is in place


def test_every_image_is_the_crop_the_manifest_records(
    built_photos: BuildResult, photo_collection: Path
) -> None:
    out, manifest = built_photos.out, built_photos.manifest
    for pair in manifest["train"][:5]:
        hr = photo(photo_collection, pair["hr"]["photo"]).crop(tuple(pair["hr"]["box"]))
        ref = photo(photo_collection, pair["ref"]["photo"]).crop(tuple(pair["ref"]["box"]))
        assert np.array_equal(np.asarray(Image.open(out / pair["input"])), np.asarray(hr))
        assert np.array_equal(np.asarray(Image.open(out / pair["ref_file"])), np.asarray(ref))
        assert pair["ref"]["from"] == "album" and pair["matches"] >= SETTINGS.min_matches
    [group] = manifest["test"]
    for member in (group["hr"], *group["references"]):
        whole = photo(photo_collection, member["photo"])
        assert np.array_equal(np.asarray(Image.open(out / member["file"])), np.asarray(whole))


def test_levels_fall_in_match_count_and_the_counts_are_the_matches(
    built_photos: BuildResult, photo_collection: Path
) -> None:
    manifest = built_photos.manifest
    [group] = manifest["test"]
    counts = [reference["matches"] for reference in group["references"]]
    assert [reference["level"] for reference in group["references"]] == [1, 2, 3, 4, 5]
    assert all(a > b for a, b in zip(counts, counts[1:], strict=False)) and counts[-1] >= SETTINGS.min_matches
    means = [manifest["levels"][f"L{level}"]["mean_matches"] for level in range(1, 6)]
    assert means == counts and means[0] > 2 * means[4]  # one group: its counts are the means
    single_threaded()
    features = {
        member["photo"]: photo_features(photo(photo_collection, member["photo"]), SETTINGS.match_size, 2000)
        for member in (group["hr"], *group["references"])
    }
    for reference in group["references"]:
        pairs = match_features(features[group["hr"]["photo"]], features[reference["photo"]], SETTINGS.ratio)
        assert len(pairs) == reference["matches"]


def test_no_photo_is_in_training_and_test_and_no_test_image_references_itself(
    built_photos: BuildResult, photo_collection: Path
) -> None:
    manifest = built_photos.manifest
    train = {pair[role]["photo"] for pair in manifest["train"] for role in ("hr", "ref")}
    test = {member["photo"] for group in manifest["test"] for member in (group["hr"], *group["references"])}
    assert train and test and not train & test
    for group in manifest["test"]:
        references = [reference["photo"] for reference in group["references"]]
        assert group["hr"]["photo"] not in references and len(set(references)) == 5
    for pair in manifest["train"]:
        assert pair["hr"]["photo"] != pair["ref"]["photo"]
    left_out = {entry["photo"] for entry in manifest["left_out"]}
    every_file = {path for path, _ in scan_collection(photo_collection)}
    assert (train | test | left_out) == every_file and not (train | test) & left_out  # none dropped silently


def test_each_bad_photo_gets_one_report_line_and_the_build_goes_on(built_photos: BuildResult) -> None:
    report = built_photos.report
    assert (built_photos.out / "report.txt").read_text().splitlines() == report
    for path, reason in BAD_FILES.items():
        lines = [line for line in report if line.startswith(f"{path}: ")]
        assert len(lines) == 1 and lines[0].startswith(f"{path}: {reason}"), (path, report)
    # the fifth: a test photo of the tested album that its one group did not need
    [unused] = [line for line in report if not line.startswith(tuple(BAD_FILES))]
    assert unused.startswith("ihc/") and "not needed: its album has its 1 test group(s)" in unused
    assert built_photos.manifest["counts"]["train_pairs"] == 21


def test_an_interrupted_build_leaves_no_output_and_finishes_with_the_same_bytes(
    built_photos: BuildResult, photo_collection: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "dataset"
    saved = []
    original = photo_dataset.save_image

    def disk_full_after_ten(image: Image.Image, path: Path) -> None:
        if len(saved) == 10:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        original(image, path)
        saved.append(path)

    monkeypatch.setattr(photo_dataset, "save_image", disk_full_after_ten)
    with pytest.raises(OSError, match="No space left"):
        build_photo_dataset(photo_collection, out, SETTINGS)
    assert not out.exists()  # nothing half-written where the dataset goes
    [staging] = work_folder(out).glob("staging-*")
    assert len(list(staging.rglob("*.png"))) == 10
    monkeypatch.setattr(photo_dataset, "save_image", original)
    again = build_photo_dataset(photo_collection, out, dataclasses.replace(SETTINGS, workers=2))
    assert tree_bytes(out) == tree_bytes(built_photos.out)  # resumed, in two processes: the same bytes
    assert again.manifest == built_photos.manifest


def test_a_collection_without_a_test_group_is_refused_with_its_reasons(
    photo_collection: Path, tmp_path: Path
) -> None:
    # seed 1 holds out the cameraman, a photo without an album: alone, it cannot head a group
    with pytest.raises(DatasetLayoutError) as raised:
        build_photo_dataset(photo_collection, tmp_path / "dataset", dataclasses.replace(SETTINGS, seed=1))
    problems = raised.value.problems
    assert problems[0].startswith(f"{photo_collection}: no test group could be made")
    assert any(line.startswith("camera.png: no matching candidate (best 0 among 0") for line in problems)
    assert not (tmp_path / "dataset").exists()


def test_settings_and_folders_are_refused_naming_the_option_or_folder(
    built_photos: BuildResult, photo_collection: Path, tmp_path: Path
) -> None:
    refused = {
        "--patch-size must be a positive multiple of 4, got 30": BuildSettings(patch_size=30),
        r"--photo-size \(100\) must be at least --patch-size \(160\)": BuildSettings(photo_size=100),
        r"--ratio must lie in \(0, 1\)": BuildSettings(ratio=1.0),
        "--split-by must be one of": BuildSettings(split_by="event"),
        "--workers must be >= 1, got 0": BuildSettings(workers=0),
    }
    for message, settings in refused.items():
        with pytest.raises(ConfigError, match=message):
            settings.check()
    with pytest.raises(ConfigError, match=f"{built_photos.out}: already exists"):
        build_photo_dataset(photo_collection, built_photos.out, SETTINGS)
    with pytest.raises(ConfigError, match="the output lies inside the photo folder"):
        build_photo_dataset(photo_collection, photo_collection / "dataset", SETTINGS)
    with pytest.raises(
        DatasetLayoutError, match="absent: folder not found; expected a folder of photographs"
    ):
        build_photo_dataset(tmp_path / "absent", tmp_path / "dataset", SETTINGS)
