"""evaluate: checkpoints of every kind on a small CUFED5 tree (an odd number of images); per-image CSV,
summaries, images, W&B table; two processes give exactly the rows of one."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import subprocess
import sys
import urllib.error
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from helpers.checkpoints import one_batch_run_checkpoint
from helpers.config import TINY_GENERATOR, compose_evaluate
from helpers.dataset_trees import astronaut_batch
from helpers.file_faults import killed_writers_leftover
from helpers.lpips_reference import seeded_alexnet_state_dict
from ttsr_lightning import lpips_setting as lpips_module
from ttsr_lightning import pretrained
from ttsr_lightning.budgeted import DEFAULT_HALO, plan_forward
from ttsr_lightning.checkpoints.loading import load_generator
from ttsr_lightning.checkpoints.official_weights import project_to_official_state_dict
from ttsr_lightning.data import CUFED5Dataset
from ttsr_lightning.errors import ConfigError, PreflightError
from ttsr_lightning.evaluate import evaluate, select_test_sets
from ttsr_lightning.evaluation_module import EvaluationModule
from ttsr_lightning.files import TEMPORARY_SUFFIX
from ttsr_lightning.lpips_setting import lpips_from_files
from ttsr_lightning.metrics import y_psnr, y_ssim
from ttsr_lightning.models import MainNet, TTSRGenerator
from ttsr_lightning.panel_images import to_uint8_image
from ttsr_lightning.pretrained import ALEXNET, lpips_heads_file, sha256_of_file
from ttsr_lightning.protocols import load_protocols
from ttsr_lightning.result_files import set_results_table

SETS = ["CUFED5_L1", "CUFED5_L3", "CUFED5_LR"]
GROUPS = ("000", "001", "002")  # an odd number: two processes get 2 and 1 images of each set
COLUMNS = ["set", "image", "ref", "reference", "protocol", "psnr", "ssim", "psnr_bicubic", "ssim_bicubic"]
MEASURES = COLUMNS[5:]


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<data_dir>/CUFED/test/CUFED5``: three groups, HR 50x66 (cropped to 48x64), references of any size."""
    data_dir = tmp_path_factory.mktemp("data")
    root = data_dir / "CUFED" / "test" / "CUFED5"
    root.mkdir(parents=True)
    photos = (skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea())
    for group, photo in zip(GROUPS, photos, strict=True):
        Image.fromarray(photo[150:200, 200:266]).save(root / f"{group}_0.png")
        for level in range(1, 6):
            top, left = 130 + 10 * level, 180 + 8 * level
            Image.fromarray(photo[top : top + 34 + 4 * level, left : left + 50 - 3 * level]).save(
                root / f"{group}_{level}.png"
            )
    return data_dir


@pytest.fixture(scope="module")
def tiny_generator() -> TTSRGenerator:
    torch.manual_seed(0)
    return TTSRGenerator(**TINY_GENERATOR).eval()


@pytest.fixture(scope="module")
def lightning_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint written by a one-batch training run of a tiny TTSRSystem (reconstruction loss)."""
    return one_batch_run_checkpoint(tmp_path_factory.mktemp("run") / "last.ckpt", TINY_GENERATOR)


@pytest.fixture(scope="module")
def official_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_generator: TTSRGenerator) -> Path:
    path = tmp_path_factory.mktemp("official") / "TTSR-tiny.pt"
    torch.save(project_to_official_state_dict(tiny_generator.state_dict()), path)
    return path


# torchvision's AlexNet cannot be downloaded here: a seeded random AlexNet in its layout stands in, its
# hash made the expected one (in this process, or through this script in evaluate's processes).
PATCHED_EVALUATE = """
import dataclasses, os
from ttsr_lightning import lpips_setting
lpips_setting.ALEXNET = dataclasses.replace(lpips_setting.ALEXNET, sha256=os.environ["TEST_ALEXNET_SHA256"])
from ttsr_lightning.evaluate import main
main()
"""


@pytest.fixture
def alexnet_file(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path_factory.mktemp("alexnet") / "alexnet-seeded.pth"
    torch.save(seeded_alexnet_state_dict(), path)
    monkeypatch.setattr(lpips_module, "ALEXNET", dataclasses.replace(ALEXNET, sha256=sha256_of_file(path)))
    return path


def eight_bit(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) in [-1, 1]; a (1, 3, H, W) tensor in [-1, 1] -> its 8-bit pixels."""
    if isinstance(image, torch.Tensor):
        return ((image + 1) * 127.5).round().clamp(0, 255) / 127.5 - 1
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def expected_outputs(generator: TTSRGenerator, data_dir: Path, ref_level: int | str) -> list[dict[str, Any]]:
    """SR image and the four measures of every CUFED5 image, computed directly (no Lightning)."""
    dataset = CUFED5Dataset(data_dir / "CUFED" / "test" / "CUFED5", ref_level=ref_level)
    outputs = []
    for item in dataset:
        batch = {key: value.unsqueeze(0) for key, value in item.items() if isinstance(value, torch.Tensor)}
        with torch.no_grad():
            sr = generator(batch["lr"], batch["lr_up"], batch["ref"], batch["ref_down_up"]).sr
        hr, lr_up = batch["hr"], batch["lr_up"]
        outputs.append(
            {
                "image": item["name"],
                "ref": item["ref_name"],
                "sr": to_uint8_image(sr[0]),
                "psnr": float(y_psnr(sr, hr)[0]),
                "ssim": float(y_ssim(sr, hr)[0]),
                "psnr_bicubic": float(y_psnr(lr_up, hr)[0]),
                "ssim_bicubic": float(y_ssim(lr_up, hr)[0]),
            }
        )
    return outputs


# ------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("kind", ["lightning", "official"])
def test_evaluation_writes_per_image_rows_means_and_images(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ckpt = request.getfixturevalue(f"{kind}_checkpoint")
    cfg = compose_evaluate(
        tmp_path, data_dir, [f"ckpt={ckpt}", f"sets=[{','.join(SETS)}]", "save_images=true"]
    )
    set_results = evaluate(cfg)

    # the generator evaluate runs (same loader, same search-transfer), measured directly
    generator = load_generator(ckpt).generator
    rows = read_csv(tmp_path / "test_per_image.csv")
    assert list(rows[0]) == COLUMNS
    assert [(row["set"], row["image"]) for row in rows] == [(s, f"{g}_0") for s in SETS for g in GROUPS]
    for set_name, ref_level in zip(SETS, (1, 3, "lr"), strict=True):
        expected = expected_outputs(generator, data_dir, ref_level)
        set_rows = [row for row in rows if row["set"] == set_name]
        for row, want in zip(set_rows, expected, strict=True):
            assert row["ref"] == want["ref"]
            for measure in MEASURES:
                assert float(row[measure]) == pytest.approx(want[measure], abs=1e-9), (set_name, measure)
            saved = np.asarray(Image.open(tmp_path / "images" / set_name / f"{want['image']}.png"))
            assert saved.shape == (48, 64, 3)
            np.testing.assert_array_equal(saved, want["sr"])
        result = next(result for result in set_results if result["set"] == set_name)
        for measure in MEASURES:
            assert result[measure] == pytest.approx(
                float(np.mean([want[measure] for want in expected])), abs=1e-9
            )

    # the bicubic baseline does not depend on the model or the reference
    assert len({row["psnr_bicubic"] for row in rows if row["image"] == "000_0"}) == 1

    per_set = read_csv(tmp_path / "test_per_set.csv")
    assert [(row["set"], row["reference"], row["protocol"], row["images"]) for row in per_set] == [
        ("CUFED5_L1", "L1", "ttsr_official", "3"),
        ("CUFED5_L3", "L3", "ttsr_official", "3"),
        ("CUFED5_LR", "LR", "ttsr_official", "3"),
    ]
    summary = json.loads((tmp_path / "results.json").read_text())
    provenance = summary["provenance"]
    expected_kind = {"lightning": "training-run checkpoint", "official": "official TTSR state dict"}[kind]
    assert provenance["kind"] == "evaluate" and provenance["checkpoint"].startswith(expected_kind)
    assert provenance["generator"]["n_feats"] == 8 and provenance["git_commit"]
    assert [protocol["name"] for protocol in provenance["protocols"]] == ["ttsr_official"]
    assert [result["set"] for result in summary["sets"]] == SETS and len(summary["images"]) == 9

    table = (tmp_path / "results.md").read_text()
    assert f"| CUFED5_L1 | L1 | ttsr_official | 3 | {set_results[0]['psnr']:.3f} |" in table
    assert set_results_table(set_results) in capsys.readouterr().out
    # panels of the first images of each set, labelled by set and image
    assert {path.name for path in (tmp_path / "panels" / "test").glob("epoch_*/*.png")} == {
        f"{s}_{g}_0.png" for s in SETS for g in GROUPS
    }
    # and what the L1 reference brings over the LR as reference, image by image
    transfer = tmp_path / "panels" / "test" / "transfer"
    assert {path.name for path in transfer.glob("*.png")} == {f"CUFED5_{g}_0.png" for g in GROUPS}


def test_sets_subset_and_unknown_names() -> None:
    specs = [
        {"dataset": "cufed5", "root": "x", "ref_level": 1},
        {"dataset": "cufed5", "root": "x", "ref_level": "lr"},
        {"dataset": "urban100", "root": "y"},
    ]
    assert select_test_sets(specs, None) == specs
    assert select_test_sets(specs, ["Urban100", "CUFED5_L1"]) == [specs[0], specs[2]]  # config order
    with pytest.raises(
        ConfigError, match=r"sets: unknown evaluation set\(s\) \['Sun80'\].*'CUFED5_LR', 'Urban100'"
    ):
        select_test_sets(specs, ["CUFED5_L1", "Sun80"])
    with pytest.raises(ConfigError, match="sets: no evaluation set chosen"):
        select_test_sets(specs, [])


def test_a_missing_checkpoint_is_named(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(PreflightError, match="ckpt=.*missing.pt: no file there"):  # before any image
        evaluate(compose_evaluate(tmp_path, data_dir, [f"ckpt={tmp_path / 'missing.pt'}"]))


def test_unknown_set_name_lists_the_available_ones(
    tmp_path: Path, data_dir: Path, official_checkpoint: Path
) -> None:
    cfg = compose_evaluate(tmp_path, data_dir, [f"ckpt={official_checkpoint}", "sets=[CUFED5_L9]"])
    with pytest.raises(ConfigError, match=r"'CUFED5_L1', 'CUFED5_L2', .*'CUFED5_LR', 'CUFED5_stitched'"):
        evaluate(cfg)


def test_wandb_table_has_a_row_per_image_with_thumbnails(
    tmp_path: Path, data_dir: Path, official_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))  # where W&B stages the table's images
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    cfg = compose_evaluate(
        tmp_path,
        data_dir,
        [f"ckpt={official_checkpoint}", "sets=CUFED5_L1", "logger=wandb", "thumbnail_size=32"],
    )
    evaluate(cfg)
    (table_file,) = (tmp_path / "wandb").glob("offline-run-*/files/media/table/test/images_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == [*COLUMNS, "lr_up", "sr", "hr"]
    assert [row[:5] for row in table["data"]] == [
        ["CUFED5_L1", f"{g}_0", f"{g}_1", "L1", "ttsr_official"] for g in GROUPS
    ]
    psnr = [row["psnr"] for row in read_csv(tmp_path / "test_per_image.csv")]
    assert [row[5] for row in table["data"]] == pytest.approx([float(p) for p in psnr])
    # the thumbnails (3 images x LR-up, SR, HR), 48x64 shrunk to at most 32 px a side
    staged = [path for path in (tmp_path / "wandb_data").rglob("*") if path.is_file()]
    png_signature = b"\x89PNG\r\n\x1a\n"
    sizes = [Image.open(path).size for path in staged if path.read_bytes()[:8] == png_signature]
    assert sizes.count((32, 24)) == 9


def run_evaluate_command(
    data_dir: Path,
    run_dir: Path,
    ckpt: Path,
    *overrides: str,
    alexnet: Path | None = None,
    logger: str = "none",
) -> subprocess.CompletedProcess[str]:
    """``python -m ttsr_lightning.evaluate``; with ``alexnet``, LPIPS on that seeded AlexNet (taken for
    torchvision's file by :data:`PATCHED_EVALUATE`, in every process); ``logger`` (a ``conf/logger`` name)."""
    entry_point = ["-m", "ttsr_lightning.evaluate"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    if alexnet is not None:
        script = run_dir.parent / f"{run_dir.name}_evaluate_with_seeded_alexnet.py"
        script.write_text(PATCHED_EVALUATE)
        entry_point, overrides = [str(script)], (*overrides, f"lpips={alexnet}")
        env["TEST_ALEXNET_SHA256"] = sha256_of_file(alexnet)
    command = [
        sys.executable, *entry_point,
        f"ckpt={ckpt}", "data=cufed5", f"paths.data_dir={data_dir}", f"hydra.run.dir={run_dir}",
        f"logger={logger}", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", *overrides,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


def test_command_line_prints_the_markdown_table(
    tmp_path: Path, data_dir: Path, official_checkpoint: Path
) -> None:
    result = run_evaluate_command(
        data_dir, tmp_path, official_checkpoint, "sets=[CUFED5_L2]", "data.test.num_workers=0"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "results.json").read_text())
    assert set_results_table(summary["sets"]) in result.stdout
    assert "official TTSR state dict" in (tmp_path / "evaluate.log").read_text()


@pytest.mark.slow  # two processes: minutes on 2 cores
def test_two_processes_write_every_image_once_with_the_values_of_one(
    tmp_path: Path, data_dir: Path, lightning_checkpoint: Path, alexnet_file: Path
) -> None:
    """trainer=ddp_cpu with loader workers, 3 images per set (2 on rank 0, 1 on rank 1): the same rows
    (LPIPS included), in the same order, as one process, and the panels and SR images of both ranks; the
    means logged are the per-set means written, to the bit."""
    sets = "sets=[CUFED5_L1,CUFED5_LR,CUFED5_stitched]"
    one = run_evaluate_command(
        data_dir, tmp_path / "one", lightning_checkpoint, sets, "save_images=true", alexnet=alexnet_file
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_evaluate_command(
        data_dir, tmp_path / "two", lightning_checkpoint, sets, "save_images=true", "trainer=ddp_cpu",
        "data.test.num_workers=1", alexnet=alexnet_file, logger="csv",
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    single, ddp = (read_csv(tmp_path / run / "test_per_image.csv") for run in ("one", "two"))
    assert len(ddp) == 9 and [(r["set"], r["image"]) for r in ddp] == [(r["set"], r["image"]) for r in single]
    for mine, theirs in zip(ddp, single, strict=True):
        assert mine["ref"] == theirs["ref"] and mine["reference"] == theirs["reference"]
        for measure in (*MEASURES, "lpips", "lpips_bicubic"):
            assert float(mine[measure]) == pytest.approx(float(theirs[measure]), abs=1e-6), (
                mine["image"],
                measure,
            )
    per_set = read_csv(tmp_path / "two" / "test_per_set.csv")
    assert [row["images"] for row in per_set] == ["3", "3", "3"]
    (metrics_file,) = (tmp_path / "two").rglob("metrics.csv")
    logged = {key: float(value) for row in read_csv(metrics_file) for key, value in row.items() if value}
    for row in per_set:
        for measure in (*MEASURES, "lpips", "lpips_bicubic"):
            assert logged[f"test/{row['set']}/{measure}"] == float(row[measure]), (row["set"], measure)
    panels = {}
    for run in ("one", "two"):
        assert len(list((tmp_path / run / "images").rglob("*.png"))) == 9
        # a panel of each image, and of what the L1 reference brings (over the LR as reference)
        panels[run] = sorted(
            p.relative_to(tmp_path / run).as_posix() for p in (tmp_path / run).rglob("panels/**/*.png")
        )
        assert len([p for p in panels[run] if "/epoch_" in p]) == 9
        assert len([p for p in panels[run] if "/transfer/" in p]) == 3
    assert panels["one"] == panels["two"]


@pytest.mark.slow  # ~35 s on 2 cores
def test_protocol_all_scores_every_set_under_every_protocol_from_one_pass(
    tmp_path: Path, data_dir: Path, official_checkpoint: Path
) -> None:
    """One generator pass per image and set; each protocol's rows equal its own measure on that SR."""
    sets = "sets=[CUFED5_L1,CUFED5_stitched_masa,CUFED5_all5]"
    cfg = compose_evaluate(
        tmp_path, data_dir, [f"ckpt={official_checkpoint}", sets, "protocol=all", "save_images=true"]
    )
    forward_calls = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        # the main network runs once per image (untiled: these images fit the default budget)
        lambda module, args, output: forward_calls.append(1) if isinstance(module, MainNet) else None
    )
    try:
        set_results = evaluate(cfg)
    finally:
        hook.remove()
    assert len(forward_calls) == 3 * 3  # three images in each of three sets, whatever the protocols
    protocols = [protocol.name for protocol in load_protocols("all")]
    assert [(row["set"], row["protocol"]) for row in set_results] == [
        (s, p) for s in ("CUFED5_L1", "CUFED5_stitched_masa", "CUFED5_all5") for p in protocols
    ]
    rows = read_csv(tmp_path / "test_per_image.csv")
    assert len(rows) == 3 * 3 * len(protocols)
    for row in rows:  # each protocol's value is its own measure of the one saved SR
        protocol = next(p for p in load_protocols(row["protocol"]))
        sr = np.asarray(Image.open(tmp_path / "images" / row["set"] / f"{row['image']}.png"))
        hr = np.asarray(Image.open(data_dir / "CUFED" / "test" / "CUFED5" / f"{row['image']}.png"))[:48, :64]
        as_pixels = [torch.from_numpy(image).permute(2, 0, 1)[None].to(torch.float64) for image in (sr, hr)]
        psnr, _ = protocol.measure_pixels(*as_pixels)
        if protocol.rounding != "clamp":  # mmagic measures the unrounded output, not the saved PNG
            assert float(row["psnr"]) == pytest.approx(psnr.item(), abs=1e-9), row
    summary = json.loads((tmp_path / "results.json").read_text())["protocols"]
    assert [entry["protocol"] for entry in summary] == protocols
    masa = next(entry for entry in summary if entry["protocol"] == "masa")
    assert masa["set"] == "CUFED5_stitched_masa" and masa["psnr"] is not None
    stitched = next(entry for entry in summary if entry["protocol"] == "ttsr_stitched")
    assert stitched["set"] == "CUFED5_stitched (not evaluated)" and stitched["psnr"] is None
    assert "| basicsr | CUFED5_L1 |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "protocols.png").stat().st_size > 10_000


def test_reference_levels_is_a_composed_evaluation_in_the_table4_layout(
    tmp_path: Path, data_dir: Path, official_checkpoint: Path
) -> None:
    cfg = compose_evaluate(
        tmp_path, data_dir, [f"ckpt={official_checkpoint}", "+experiment=reference_levels"]
    )
    results = evaluate(cfg)
    levels = ["CUFED5_L1", "CUFED5_L2", "CUFED5_L3", "CUFED5_L4", "CUFED5_L5", "CUFED5_LR"]
    assert [row["set"] for row in results] == levels
    table = (tmp_path / "table.md").read_text()
    ours = {row["set"]: row for row in results}
    assert f"| ours | {ours['CUFED5_L1']['psnr']:.2f} / {ours['CUFED5_L1']['ssim']:.4f} |" in table
    assert "| paper | 26.99 / 0.800? | 26.74? / 0.791? | 26.64? / 0.788? | 26.58? / 0.787? | – |" in table
    assert (tmp_path / "table.png").stat().st_size > 5_000
    provenance = json.loads((tmp_path / "results.json").read_text())["provenance"]
    assert provenance["trains"] == provenance["run"] == "TTSR-tiny"  # an official file: named by its stem


def test_lpips_beside_psnr_ssim_is_the_network_on_the_saved_images(
    tmp_path: Path, data_dir: Path, official_checkpoint: Path, alexnet_file: Path
) -> None:
    """One LPIPS per image (the same under every protocol), of the SR PNG it writes and of the bicubic
    image, against the HR; per-set means; columns, Markdown headers and provenance say what it is."""
    sets = ["CUFED5_L1", "CUFED5_LR"]
    cfg = compose_evaluate(
        tmp_path,
        data_dir,
        [f"ckpt={official_checkpoint}", f"sets=[{','.join(sets)}]", "save_images=true",
         "protocol=[ttsr_official,basicsr]", f"lpips={alexnet_file}"],
    )  # fmt: skip
    set_results = evaluate(cfg)
    rows = read_csv(tmp_path / "test_per_image.csv")
    assert list(rows[0]) == [*COLUMNS, "lpips", "lpips_bicubic"] and len(rows) == 2 * 2 * 3
    heads = lpips_heads_file()
    assert heads is not None
    network = lpips_from_files(alexnet_file, heads)
    dataset = CUFED5Dataset(data_dir / "CUFED" / "test" / "CUFED5", ref_level=1)
    lr_up = {item["name"]: item["lr_up"][None] for item in dataset}
    root = data_dir / "CUFED" / "test" / "CUFED5"
    for row in rows:
        sr = eight_bit(np.asarray(Image.open(tmp_path / "images" / row["set"] / f"{row['image']}.png")))
        hr = eight_bit(np.asarray(Image.open(root / f"{row['image']}.png"))[:48, :64])
        with torch.no_grad():
            assert float(row["lpips"]) == pytest.approx(float(network(sr, hr)), abs=1e-6), row
            bicubic = float(network(eight_bit(lr_up[row["image"]]), hr))
        assert float(row["lpips_bicubic"]) == pytest.approx(bicubic, abs=1e-6), row
        assert float(row["lpips"]) > 0
    for result in set_results:
        mine = [
            float(row["lpips"])
            for row in rows
            if (row["set"], row["protocol"]) == (result["set"], result["protocol"])
        ]
        assert result["lpips"] == pytest.approx(np.mean(mine), abs=1e-9)
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["provenance"]["lpips"].startswith("AlexNet v0.1 (lower is better")
    assert "| LPIPS ↓ | bicubic LPIPS ↓ |" in (tmp_path / "results.md").read_text()


def test_lpips_means_are_lower_is_better_psnr_and_ssim_higher(
    tiny_generator: TTSRGenerator, alexnet_file: Path
) -> None:
    """The direction each logged mean declares (torchmetrics' ``higher_is_better``), per measure."""
    module = EvaluationModule(tiny_generator, lpips=alexnet_file)
    lr_up, ref, hr = torch.rand(3, 1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    batch = {"lr": lr_up[..., ::4, ::4], "lr_up": lr_up, "ref": ref, "ref_down_up": ref, "hr": hr}
    with torch.no_grad(), pytest.warns(UserWarning, match="self.log"):
        module.test_step(batch, 0)
    directions = {
        key.rsplit("__", 1)[1]: metric.higher_is_better for key, metric in module.eval_metrics.items()
    }
    assert directions == {
        "lpips": False,
        "lpips_bicubic": False,
        "psnr": True,
        "ssim": True,
        "psnr_bicubic": True,
        "ssim_bicubic": True,
    }


def test_without_alexnet_weights_lpips_is_skipped_with_one_warning_and_the_outputs_say_so(
    tmp_path: Path, data_dir: Path, official_checkpoint: Path
) -> None:
    cfg = compose_evaluate(tmp_path, data_dir, [f"ckpt={official_checkpoint}", "sets=CUFED5_L1"])
    assert cfg.lpips == "auto"  # the default; this test session's torch.hub cache is empty
    with pytest.warns(UserWarning) as record:
        evaluate(cfg)
    assert [str(w.message) for w in record].count(str(record[0].message)) == 1
    assert sum("LPIPS skipped" in str(w.message) for w in record) == 1
    assert list(read_csv(tmp_path / "test_per_image.csv")[0]) == COLUMNS
    provenance = json.loads((tmp_path / "results.json").read_text())["provenance"]
    assert provenance["lpips"].startswith("skipped (lpips=auto): the AlexNet ImageNet weights are not at")
    assert "lpips: skipped (lpips=auto)" in (tmp_path / "results.md").read_text()


def test_lpips_true_without_weights_refuses_to_start(
    tmp_path: Path, data_dir: Path, official_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(url: str, destination: str, progress: bool = True) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(pretrained, "download_url_to_file", offline)
    cfg = compose_evaluate(tmp_path, data_dir, [f"ckpt={official_checkpoint}", "lpips=true"])
    with pytest.raises(ConfigError, match=r"^lpips=true: could not download .*alexnet-owt-7be5be79\.pth"):
        evaluate(cfg)
    assert not (tmp_path / "test_per_image.csv").exists()


def test_killed_writers_leftovers_in_the_run_folder_are_removed_at_the_start(
    tmp_path: Path, data_dir: Path, official_checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The run folder and the folders below it (panels, images): an evaluation into a folder that
    holds earlier results (overwrite=true) finds what a killed one left there."""
    leftovers = [
        killed_writers_leftover(tmp_path, "results.json"),
        killed_writers_leftover(tmp_path / "panels" / "test" / "epoch_000", "CUFED5_L1_000_0.png"),
    ]
    cfg = compose_evaluate(tmp_path, data_dir, [f"ckpt={official_checkpoint}", "sets=CUFED5_L1", "halo=5"])
    with caplog.at_level(logging.INFO, logger="ttsr_lightning.files"):
        evaluate(cfg)
    assert not any(leftover.exists() for leftover in leftovers)
    assert [f"removed {leftover}, the unfinished write of a killed run" for leftover in leftovers] == [
        record.getMessage() for record in caplog.records if record.name == "ttsr_lightning.files"
    ]
    assert not list(tmp_path.rglob(f"*{TEMPORARY_SUFFIX}"))
    assert json.loads((tmp_path / "results.json").read_text())["provenance"]["halo"] == 5


def test_halo_is_the_context_of_the_tiles_and_a_bad_one_is_refused_before_the_checkpoint_is_read(
    tmp_path: Path, data_dir: Path, tiny_generator: TTSRGenerator, caplog: pytest.LogCaptureFixture
) -> None:
    batch = astronaut_batch()
    budget = plan_forward(tiny_generator, (36, 128), [(40, 60)], None).estimated_bytes
    while not plan_forward(tiny_generator, (36, 128), [(40, 60)], budget, halo=5).tiled:
        budget = budget * 3 // 4
    assert EvaluationModule(tiny_generator).halo == DEFAULT_HALO
    with caplog.at_level(logging.INFO, logger="ttsr_lightning.evaluation_module"), torch.no_grad():
        EvaluationModule(tiny_generator, max_memory=budget, halo=5)(batch)
    assert "main-network tiles of" in caplog.text and "with a halo of 5," in caplog.text
    with pytest.raises(ConfigError, match=r"^halo: expected an integer >= 0 \(LR pixels .*got -3$"):
        evaluate(compose_evaluate(tmp_path, data_dir, [f"ckpt={tmp_path / 'missing.pt'}", "halo=-3"]))
