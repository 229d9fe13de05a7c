"""Official-weight import: parity with the official code's outputs, key checks, conversion, checkpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from ttsr_lightning.models import TTSRGenerator
from ttsr_lightning.official import (
    GENERATOR_FORMAT,
    load_generator_checkpoint,
    load_generator_weights,
    load_official_generator,
    main,
    official_to_project_state_dict,
    save_generator_checkpoint,
)

PARITY_TOLERANCE = 1e-5  # max abs error, fp32


@pytest.fixture(scope="module")
def official_weights(shared_fixtures: Path) -> Path:
    return shared_fixtures / "official_small_G.pt"


@pytest.fixture(scope="module")
def official_forward(shared_fixtures: Path) -> dict[str, Any]:
    return torch.load(shared_fixtures / "official_small_forward.pt", weights_only=False)


def official_state_dict_of(generator: TTSRGenerator) -> dict[str, torch.Tensor]:
    """The generator's weights as the official trainer would save them (incl. LTE.sub_mean)."""
    state_dict = {
        key.replace("main_net.", "MainNet.", 1).replace("lte.", "LTE.", 1): value
        for key, value in generator.state_dict().items()
    }
    std = torch.tensor([0.229, 0.224, 0.225])
    state_dict["LTE.sub_mean.weight"] = (torch.eye(3) / std.view(3, 1)).view(3, 3, 1, 1)
    state_dict["LTE.sub_mean.bias"] = -torch.tensor([0.485, 0.456, 0.406]) / std
    return state_dict


@pytest.mark.parametrize("case", ["main", "rect_b2"])
def test_parity_with_the_official_code(official_weights: Path, official_forward: dict, case: str) -> None:
    fixture = official_forward if case == "main" else official_forward["cases"][case]
    inputs, outputs, intermediates = fixture["inputs"], fixture["outputs"], fixture["intermediates"]
    generator = load_official_generator(official_weights)
    assert generator.lte is not None
    with torch.no_grad():
        out = generator(inputs["lr"], inputs["lrsr"], inputs["ref"], inputs["refsr"])
        _, _, lrsr_lv3 = generator.lte(inputs["lrsr"])
        _, _, refsr_lv3 = generator.lte(inputs["refsr"])
        ref_lv1, ref_lv2, ref_lv3 = generator.lte(inputs["ref"])
        sr_lv1, sr_lv2, sr_lv3 = generator.lte(out.sr)  # the frozen copy's features of sr (same weights)
    assert torch.equal(out.hard_index, intermediates["hard_index"])
    ours = {
        "sr": out.sr,
        "S": out.soft_attention,
        "T_lv3": out.t_lv3,
        "T_lv2": out.t_lv2,
        "T_lv1": out.t_lv1,
        "lrsr_lv3": lrsr_lv3,
        "refsr_lv3": refsr_lv3,
        "ref_lv1": ref_lv1,
        "ref_lv2": ref_lv2,
        "ref_lv3": ref_lv3,
        "sr_lv1": sr_lv1,
        "sr_lv2": sr_lv2,
        "sr_lv3": sr_lv3,
    }
    expected = {**outputs, **intermediates}
    errors = {}
    for name, value in ours.items():
        assert value is not None and value.shape == expected[name].shape, name
        errors[name] = (value - expected[name]).abs().max().item()
    assert max(errors.values()) < PARITY_TOLERANCE, errors


def test_loads_without_arguments_in_eval_mode(official_weights: Path) -> None:
    generator = load_official_generator(official_weights)
    assert not generator.training
    assert generator.config["n_feats"] == 16 and generator.config["num_res_blocks"] == [1, 1, 1, 1]


def test_default_size_official_layout_loads(tmp_path: Path) -> None:
    """A 316-key official file (n_feats 64, 16+16+8+4) with DataParallel prefixes and LTE_copy."""
    source = TTSRGenerator(vgg_weights="random")
    state_dict = official_state_dict_of(source)
    assert len(state_dict) == 316
    state_dict |= {
        key.replace("LTE.", "LTE_copy.", 1): v for key, v in state_dict.items() if key.startswith("LTE.")
    }
    torch.save({f"module.{key}": value for key, value in state_dict.items()}, tmp_path / "TTSR.pt")
    generator = load_official_generator(tmp_path / "TTSR.pt")
    assert generator.config["n_feats"] == 64 and generator.config["num_res_blocks"] == [16, 16, 8, 4]
    for key, value in source.state_dict().items():
        assert torch.equal(generator.state_dict()[key], value), key


def test_key_problems_are_listed_together(tmp_path: Path) -> None:
    state_dict = official_state_dict_of(
        TTSRGenerator(n_feats=8, num_res_blocks=[1, 1, 1, 1], vgg_weights="random")
    )
    del state_dict["MainNet.RB21.0.conv2.bias"]
    state_dict["MainNet.extra.weight"] = torch.zeros(1)
    state_dict["LTE.slice2.5.bias"] = torch.zeros(7)
    torch.save(state_dict, tmp_path / "bad.pt")
    with pytest.raises(ValueError) as error:
        load_official_generator(tmp_path / "bad.pt")
    message = str(error.value)
    assert str(tmp_path / "bad.pt") in message
    assert "1 unknown keys: main_net.extra.weight" in message
    assert "1 missing keys: main_net.RB21.0.conv2.bias" in message
    assert "1 mis-shaped keys: lte.slice2.5.bias (7,) (expected (128,))" in message


def test_sub_mean_must_be_the_imagenet_normalisation() -> None:
    state_dict = official_state_dict_of(
        TTSRGenerator(n_feats=8, num_res_blocks=[1, 1, 1, 1], vgg_weights="random")
    )
    assert "lte.sub_mean.weight" not in official_to_project_state_dict(state_dict)
    state_dict["LTE.sub_mean.bias"] = torch.zeros(3)
    with pytest.raises(ValueError, match="ImageNet normalisation"):
        official_to_project_state_dict(state_dict)


def test_generator_checkpoint_round_trip(
    official_weights: Path, official_forward: dict, tmp_path: Path
) -> None:
    official = load_official_generator(official_weights)
    save_generator_checkpoint(official, tmp_path / "g.ckpt")
    payload = torch.load(tmp_path / "g.ckpt", weights_only=True)
    assert payload["format"] == GENERATOR_FORMAT and payload["version"] == 1
    assert payload["generator_config"] == official.config
    restored = load_generator_checkpoint(tmp_path / "g.ckpt")
    assert not restored.training
    inputs = official_forward["inputs"]
    with torch.no_grad():
        expected = official(inputs["lr"], inputs["lrsr"], inputs["ref"], inputs["refsr"]).sr
        assert torch.equal(
            restored(inputs["lr"], inputs["lrsr"], inputs["ref"], inputs["refsr"]).sr, expected
        )


def test_generator_checkpoint_format_errors(tmp_path: Path) -> None:
    torch.save({"format": GENERATOR_FORMAT, "version": 99}, tmp_path / "future.ckpt")
    with pytest.raises(ValueError, match="version 99"):
        load_generator_checkpoint(tmp_path / "future.ckpt")
    torch.save({"MainNet.x": torch.zeros(1)}, tmp_path / "official.pt")
    with pytest.raises(ValueError, match="is not a ttsr-lightning/generator file"):
        load_generator_checkpoint(tmp_path / "official.pt")


def test_load_generator_weights_accepts_both_formats(official_weights: Path, tmp_path: Path) -> None:
    official = load_official_generator(official_weights)
    save_generator_checkpoint(official, tmp_path / "g.ckpt")
    for path in (official_weights, tmp_path / "g.ckpt"):
        generator = TTSRGenerator(n_feats=16, num_res_blocks=[1, 1, 1, 1], vgg_weights="random")
        load_generator_weights(generator, path)
        for key, value in official.state_dict().items():
            assert torch.equal(generator.state_dict()[key], value), (path, key)
    with pytest.raises(ValueError, match="mis-shaped"):
        load_generator_weights(
            TTSRGenerator(n_feats=8, num_res_blocks=[1, 1, 1, 1], vgg_weights="random"), path
        )


def test_convert_cli(official_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["convert", str(official_weights), str(tmp_path / "small.ckpt")])
    printed = capsys.readouterr().out
    assert f"read 104 tensors from {official_weights}" in printed
    assert "n_feats=16, num_res_blocks=[1, 1, 1, 1]" in printed
    assert "LTE.sub_mean" in printed and "102 tensors" in printed
    restored = load_generator_checkpoint(tmp_path / "small.ckpt")
    for key, value in load_official_generator(official_weights).state_dict().items():
        assert torch.equal(restored.state_dict()[key], value)


def test_convert_runs_as_a_module(official_weights: Path, tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "ttsr_lightning.official",
        "convert",
        str(official_weights),
        str(tmp_path / "o.ckpt"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and (tmp_path / "o.ckpt").is_file()
