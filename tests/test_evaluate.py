"""evaluate: checkpoints of every kind on a small CUFED5 tree; per-image CSV, summaries, images, W&B table."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch import Trainer
from omegaconf import DictConfig, open_dict
from PIL import Image
from torch.utils.data import DataLoader

from ttsr_lightning.config_paths import CONFIG_DIR
from ttsr_lightning.data import CUFED5Dataset
from ttsr_lightning.evaluate import evaluate, markdown_table, select_test_sets
from ttsr_lightning.infer import load_generator
from ttsr_lightning.metrics import y_psnr, y_ssim
from ttsr_lightning.models import TTSRGenerator
from ttsr_lightning.models.vgg19 import IMAGENET_MEAN, IMAGENET_STD
from ttsr_lightning.official import OFFICIAL_PREFIXES, save_generator_checkpoint
from ttsr_lightning.panels import to_uint8_image
from ttsr_lightning.system import TTSRSystem

TINY_GENERATOR: dict[str, Any] = {"n_feats": 8, "num_res_blocks": [1, 1, 1, 1], "vgg_weights": "random"}
SETS = ["CUFED5_L1", "CUFED5_L3", "CUFED5_LR"]
GROUPS = ("000", "001")
COLUMNS = ["set", "image", "ref", "psnr", "ssim", "psnr_bicubic", "ssim_bicubic"]


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<data_dir>/CUFED/test/CUFED5``: two groups, HR 50x66 (cropped to 48x64), references of many sizes."""
    data_dir = tmp_path_factory.mktemp("data")
    root = data_dir / "CUFED" / "test" / "CUFED5"
    root.mkdir(parents=True)
    photos = (skimage.data.astronaut(), skimage.data.coffee())
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
    torch.manual_seed(0)
    system = TTSRSystem(
        generator={"_target_": "ttsr_lightning.models.TTSRGenerator", **TINY_GENERATOR},
        discriminator=None,
        losses={
            "reconstruction": {"_target_": "ttsr_lightning.losses.ReconstructionLoss"},
            "weights": {"reconstruction": 1.0},
        },
        optim={"warmup_epochs": 1},
    )
    batch = {"lr": torch.rand(3, 10, 10) * 2 - 1, "hr": torch.rand(3, 40, 40) * 2 - 1}
    batch.update(lr_up=batch["hr"], ref=batch["hr"], ref_down_up=batch["hr"])
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(system, train_dataloaders=DataLoader([batch], batch_size=1))
    path = tmp_path_factory.mktemp("run") / "last.ckpt"
    trainer.save_checkpoint(path)
    return path


def official_state_dict_of(generator: TTSRGenerator) -> dict[str, torch.Tensor]:
    """The generator's weights under the official keys (``MainNet.*``, ``LTE.*``, with ``LTE.sub_mean``)."""
    to_official = {project: official for official, project in OFFICIAL_PREFIXES.items()}
    state_dict = {}
    for key, value in generator.state_dict().items():
        prefix = next(p for p in to_official if key.startswith(p))
        state_dict[to_official[prefix] + key.removeprefix(prefix)] = value
    std = torch.tensor(IMAGENET_STD)
    state_dict["LTE.sub_mean.weight"] = (torch.eye(3) / std.view(3, 1)).view(3, 3, 1, 1)
    state_dict["LTE.sub_mean.bias"] = -torch.tensor(IMAGENET_MEAN) / std
    return state_dict


@pytest.fixture(scope="module")
def official_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_generator: TTSRGenerator) -> Path:
    path = tmp_path_factory.mktemp("official") / "TTSR-tiny.pt"
    torch.save(official_state_dict_of(tiny_generator), path)
    return path


def compose_evaluate(output_dir: Path, data_dir: Path, overrides: list[str]) -> DictConfig:
    """The config `python -m ttsr_lightning.evaluate <overrides>` runs: CPU, no logger, below output_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name="evaluate",
            overrides=[
                f"paths.root_dir={output_dir}",
                f"paths.data_dir={data_dir}",
                f"paths.output_dir={output_dir}",
                "data=cufed5",
                "data.test.num_workers=0",
                "data.test.pin_memory=false",
                "trainer.accelerator=cpu",
                "trainer.enable_progress_bar=false",
                "+trainer.enable_model_summary=false",
                "logger=none",
                *overrides,
            ],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


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
    metrics = evaluate(cfg)

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
            for measure in ("psnr", "ssim", "psnr_bicubic", "ssim_bicubic"):
                assert float(row[measure]) == pytest.approx(want[measure], abs=1e-9), (set_name, measure)
            saved = np.asarray(Image.open(tmp_path / "images" / set_name / f"{want['image']}.png"))
            assert saved.shape == (48, 64, 3)
            np.testing.assert_array_equal(saved, want["sr"])
        for measure in ("psnr", "ssim", "psnr_bicubic", "ssim_bicubic"):
            mean = float(np.mean([want[measure] for want in expected]))
            assert metrics[f"test/{set_name}/{measure}"] == pytest.approx(mean, abs=1e-9)

    # the bicubic baseline does not depend on the model or the reference
    bicubic = {row["psnr_bicubic"] for row in rows if row["image"] == "000_0"}
    assert len(bicubic) == 1

    summary = json.loads((tmp_path / "test_summary.json").read_text())
    assert summary == pytest.approx(metrics)
    per_set = read_csv(tmp_path / "test_per_set.csv")
    assert [(row["set"], row["reference"], row["images"]) for row in per_set] == [
        ("CUFED5_L1", "L1", "2"),
        ("CUFED5_L3", "L3", "2"),
        ("CUFED5_LR", "LR", "2"),
    ]
    assert float(per_set[2]["psnr"]) == pytest.approx(metrics["test/CUFED5_LR/psnr"])
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    expected_kind = {"lightning": "Lightning checkpoint", "official": "official TTSR state dict"}[kind]
    assert evaluation["checkpoint"].startswith(expected_kind)
    assert evaluation["generator"]["n_feats"] == 8
    assert [result["set"] for result in evaluation["results"]] == SETS

    table = (tmp_path / "results.md").read_text()
    assert f"| CUFED5_L1 | L1 | 2 | {metrics['test/CUFED5_L1/psnr']:.3f} |" in table
    assert table in capsys.readouterr().out


def test_loaders_reproduce_the_source_weights(
    tmp_path: Path, tiny_generator: TTSRGenerator, official_checkpoint: Path, lightning_checkpoint: Path
) -> None:
    generator_file = tmp_path / "tiny_generator.ckpt"
    save_generator_checkpoint(tiny_generator, generator_file)
    trained = torch.load(lightning_checkpoint, weights_only=True)["state_dict"]
    sources = {
        official_checkpoint: (tiny_generator.state_dict(), "official TTSR state dict"),
        generator_file: (tiny_generator.state_dict(), "generator file (ttsr-lightning/generator v1)"),
        lightning_checkpoint: (
            {k.removeprefix("generator."): v for k, v in trained.items() if k.startswith("generator.")},
            "Lightning checkpoint of a training run (epoch 1, training batches seen: 1",
        ),
    }
    for path, (expected_weights, description) in sources.items():
        loaded = load_generator(path)
        assert loaded.description.startswith(description)
        weights = loaded.generator.state_dict()
        assert weights.keys() == expected_weights.keys()
        assert all(torch.equal(weights[key], expected_weights[key]) for key in weights)


def test_sets_subset_and_unknown_names() -> None:
    specs = [
        {"dataset": "cufed5", "root": "x", "ref_level": 1},
        {"dataset": "cufed5", "root": "x", "ref_level": "lr"},
        {"dataset": "urban100", "root": "y"},
    ]
    assert select_test_sets(specs, None) == specs
    assert select_test_sets(specs, ["Urban100", "CUFED5_L1"]) == [specs[0], specs[2]]  # config order
    with pytest.raises(
        ValueError, match=r"sets: unknown evaluation set\(s\) \['Sun80'\].*'CUFED5_LR', 'Urban100'"
    ):
        select_test_sets(specs, ["CUFED5_L1", "Sun80"])
    with pytest.raises(ValueError, match="sets: no evaluation set chosen"):
        select_test_sets(specs, [])


def test_checkpoint_errors_name_ckpt(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ckpt: no file at .*missing.pt"):
        evaluate(compose_evaluate(tmp_path, data_dir, [f"ckpt={tmp_path / 'missing.pt'}"]))
    not_torch = tmp_path / "notes.pt"
    not_torch.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="ckpt: cannot read .*notes.pt as a torch checkpoint"):
        load_generator(not_torch)
    unknown = tmp_path / "unknown.pt"
    torch.save({"encoder.weight": torch.zeros(2)}, unknown)
    with pytest.raises(
        ValueError, match=r"ckpt: .*unknown.pt is not a checkpoint this suite knows .*encoder.weight"
    ):
        load_generator(unknown)
    other_run = tmp_path / "other.ckpt"
    torch.save(
        {"pytorch-lightning_version": "2.6.6", "state_dict": {}, "hyper_parameters": {"lr": 0.1}}, other_run
    )
    with pytest.raises(
        ValueError, match="other.ckpt: a Lightning checkpoint whose hyper_parameters.generator"
    ):
        load_generator(other_run)


def test_unknown_set_name_lists_the_available_ones(
    tmp_path: Path, data_dir: Path, official_checkpoint: Path
) -> None:
    cfg = compose_evaluate(tmp_path, data_dir, [f"ckpt={official_checkpoint}", "sets=[CUFED5_L9]"])
    with pytest.raises(ValueError, match=r"'CUFED5_L1', 'CUFED5_L2', .*'CUFED5_LR', 'CUFED5_stitched'"):
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
    assert [row[:3] for row in table["data"]] == [
        ["CUFED5_L1", "000_0", "000_1"],
        ["CUFED5_L1", "001_0", "001_1"],
    ]
    psnr = [row["psnr"] for row in read_csv(tmp_path / "test_per_image.csv")]
    assert [row[3] for row in table["data"]] == pytest.approx([float(p) for p in psnr])
    # the thumbnails (2 images x LR-up, SR, HR), 48x64 shrunk to at most 32 px a side
    staged = [path for path in (tmp_path / "wandb_data").rglob("*") if path.is_file()]
    png_signature = b"\x89PNG\r\n\x1a\n"
    sizes = [Image.open(path).size for path in staged if path.read_bytes()[:8] == png_signature]
    assert sizes == [(32, 24)] * 6


def test_command_line_prints_the_markdown_table(
    tmp_path: Path, data_dir: Path, official_checkpoint: Path
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ttsr_lightning.evaluate",
            f"ckpt={official_checkpoint}",
            "data=cufed5",
            "data.test.num_workers=0",
            f"paths.data_dir={data_dir}",
            f"hydra.run.dir={tmp_path}",
            "sets=[CUFED5_L2]",
            "logger=none",
            "trainer.accelerator=cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_csv(tmp_path / "test_per_set.csv")
    assert markdown_table([{**rows[0], **{k: float(rows[0][k]) for k in COLUMNS[3:]}}]) in result.stdout
    assert "official TTSR state dict" in (tmp_path / "evaluate.log").read_text()
