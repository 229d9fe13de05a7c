"""The embedded sample dataset: offline, deterministic, idempotent, safe under concurrent builds."""

from __future__ import annotations

import hashlib
import multiprocessing
import shutil
from pathlib import Path

import pytest
from PIL import Image

from ttsr_lightning.data import (
    CUFED5Dataset,
    CUFEDTrainDataset,
    DatasetLayoutError,
    build_sample_dataset,
    sample,
)
from ttsr_lightning.data.sample import PROVENANCE_FILE


def digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_layout_is_cufed_shaped_and_loads(sample_root: Path) -> None:
    cufed = sample_root / "CUFED"
    assert sorted(path.name for path in sample_root.iterdir()) == ["CUFED"]  # no staging folder left behind
    train = CUFEDTrainDataset(cufed / "train", patch_size=64)
    assert len(train) == 80
    sizes = [Image.open(pair.input).size for pair in train.pairs]
    assert set(sizes) == {(64, 64)}
    ref_sizes = [Image.open(pair.ref).size for pair in train.pairs]
    assert ref_sizes.count((60, 56)) == 20 and ref_sizes.count((64, 64)) == 60
    test = CUFED5Dataset(cufed / "test" / "CUFED5")
    assert len(test) == 6
    hr_sizes = [Image.open(item.hr).size for item in test.items]
    assert any(w % 4 or h % 4 for w, h in hr_sizes) and any(h > w for w, h in hr_sizes)
    assert all(150 <= min(w, h) <= 170 and 230 <= max(w, h) <= 250 for w, h in hr_sizes)
    note = (cufed / PROVENANCE_FILE).read_text()
    assert "public domain" in note and "CC0" in note and "| test/CUFED5/005_5.png |" in note


def test_build_is_deterministic(sample_root: Path, tmp_path: Path) -> None:
    assert digest(build_sample_dataset(tmp_path)) == digest(sample_root / "CUFED")


def test_existing_sample_is_reused_untouched(sample_root: Path) -> None:
    before = {path: path.stat().st_mtime_ns for path in (sample_root / "CUFED").rglob("*")}
    assert build_sample_dataset(sample_root) == sample_root / "CUFED"
    assert {path: path.stat().st_mtime_ns for path in (sample_root / "CUFED").rglob("*")} == before


def test_two_processes_building_at_once_both_get_the_sample(tmp_path: Path, sample_root: Path) -> None:
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=build_sample_dataset, args=(tmp_path,)) for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0, 0]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["CUFED"]
    assert digest(tmp_path / "CUFED") == digest(sample_root / "CUFED")


def test_losing_the_rename_race_uses_the_winners_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = sample._write_sample
    winner: dict[str, int] = {}

    def write_then_lose_the_race(folder: Path) -> int:
        count = write(folder)
        shutil.copytree(folder, tmp_path / "CUFED")  # another rank's build lands first
        winner["folder"] = (tmp_path / "CUFED").stat().st_ino
        return count

    monkeypatch.setattr(sample, "_write_sample", write_then_lose_the_race)
    assert build_sample_dataset(tmp_path) == tmp_path / "CUFED"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["CUFED"]  # our staging copy is gone
    assert (tmp_path / "CUFED").stat().st_ino == winner["folder"]  # the winner's folder, not replaced


def test_refuses_a_folder_that_is_not_the_sample(tmp_path: Path) -> None:
    (tmp_path / "CUFED" / "train").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match=r"CUFED: exists but is not the embedded sample set"):
        build_sample_dataset(tmp_path)


def test_refuses_a_sample_of_another_version(tmp_path: Path) -> None:
    (tmp_path / "CUFED").mkdir()
    (tmp_path / "CUFED" / PROVENANCE_FILE).write_text("# ttsr-lightning embedded sample dataset, version 0\n")
    with pytest.raises(
        DatasetLayoutError, match=r"from another sample version .*delete .*CUFED to rebuild it"
    ):
        build_sample_dataset(tmp_path)


def test_training_references_share_their_hr_crops_texture(sample_root: Path) -> None:
    """Each training reference holds most of its HR crop's content, moved by 8-24 px (or the other stereo
    view): the best-matching shift of the reference against the HR leaves a small error, far below the
    error of the unshifted pair or of another photo's reference."""
    import numpy as np

    train = CUFEDTrainDataset(sample_root / "CUFED" / "train", patch_size=64)

    def best_shift_error(hr: np.ndarray, ref: np.ndarray) -> float:
        errors = []
        for dy in range(-24, 25, 4):
            for dx in range(-24, 25, 4):
                h = hr[max(dy, 0) : 64 + min(dy, 0), max(dx, 0) : 64 + min(dx, 0)]
                r = ref[max(-dy, 0) : 64 + min(-dy, 0), max(-dx, 0) : 64 + min(-dx, 0)]
                rows, cols = min(h.shape[0], r.shape[0]), min(h.shape[1], r.shape[1])
                errors.append(float(np.abs(h[:rows, :cols] - r[:rows, :cols]).mean()))
        return min(errors)

    pixels = [
        (np.asarray(Image.open(p.input), dtype=np.float32), np.asarray(Image.open(p.ref), dtype=np.float32))
        for p in train.pairs
    ]
    own = [best_shift_error(hr, ref) for hr, ref in pixels]
    other = [best_shift_error(hr, pixels[(n + 8) % len(pixels)][1]) for n, (hr, _) in enumerate(pixels)]
    assert np.median(own) < 3.0  # 8-bit levels: the same pixels, moved (the stereo view differs a little)
    assert np.median(other) > 4 * np.median(own)
