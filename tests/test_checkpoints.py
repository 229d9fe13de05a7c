"""checkpoints/: every weights format read and written by its own module; parity with the official code;
each broken or mismatched file is one clear error naming the file and what differs."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

from helpers.checkpoints import one_batch_run_checkpoint
from helpers.config import TINY_GENERATOR
from ttsr_lightning.checkpoints.generator_file import (
    GENERATOR_FORMAT,
    GENERATOR_FORMAT_VERSION,
    save_generator,
)
from ttsr_lightning.checkpoints.loading import load_generator, load_generator_weights, read_generator_weights
from ttsr_lightning.checkpoints.official_weights import (
    official_to_project_state_dict,
    project_to_official_state_dict,
)
from ttsr_lightning.checkpoints.run_checkpoint import strip_frozen_weights
from ttsr_lightning.errors import CheckpointError
from ttsr_lightning.models import TTSRGenerator

PARITY_TOLERANCE = 1e-5  # max abs error, fp32


@pytest.fixture(scope="module")
def official_weights(shared_fixtures: Path) -> Path:
    return shared_fixtures / "official_small_G.pt"


@pytest.fixture(scope="module")
def official_forward(shared_fixtures: Path) -> dict[str, Any]:
    return torch.load(shared_fixtures / "official_small_forward.pt", weights_only=False)


def tiny_generator(seed: int = 0, **overrides: Any) -> TTSRGenerator:
    torch.manual_seed(seed)
    return TTSRGenerator(**{**TINY_GENERATOR, **overrides}).eval()


@pytest.fixture(scope="module")
def run_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run's Lightning checkpoint after one training batch of a tiny TTSRSystem."""
    return one_batch_run_checkpoint(tmp_path_factory.mktemp("run") / "last.ckpt", TINY_GENERATOR)


# ------------------------------------------------------------------------------ official weights
@pytest.mark.parametrize("case", ["main", "rect_b2"])
def test_parity_with_the_official_code(official_weights: Path, official_forward: dict, case: str) -> None:
    fixture = official_forward if case == "main" else official_forward["cases"][case]
    inputs, outputs, intermediates = fixture["inputs"], fixture["outputs"], fixture["intermediates"]
    generator = load_generator(official_weights).generator
    assert generator.lte is not None
    with torch.no_grad():
        out = generator(inputs["lr"], inputs["lrsr"], inputs["ref"], inputs["refsr"])
        _, _, lrsr_lv3 = generator.lte(inputs["lrsr"])
        _, _, refsr_lv3 = generator.lte(inputs["refsr"])
        ref_lv1, ref_lv2, ref_lv3 = generator.lte(inputs["ref"])
        sr_lv1, sr_lv2, sr_lv3 = generator.lte(out.sr)  # the frozen copy's features of sr (same weights)
    assert torch.equal(out.hard_index, intermediates["hard_index"])
    ours = {
        "sr": out.sr, "S": out.soft_attention, "T_lv3": out.t_lv3, "T_lv2": out.t_lv2, "T_lv1": out.t_lv1,
        "lrsr_lv3": lrsr_lv3, "refsr_lv3": refsr_lv3,
        "ref_lv1": ref_lv1, "ref_lv2": ref_lv2, "ref_lv3": ref_lv3,
        "sr_lv1": sr_lv1, "sr_lv2": sr_lv2, "sr_lv3": sr_lv3,
    }  # fmt: skip
    expected = {**outputs, **intermediates}
    errors = {}
    for name, value in ours.items():
        assert value is not None and value.shape == expected[name].shape, name
        errors[name] = (value - expected[name]).abs().max().item()
    assert max(errors.values()) < PARITY_TOLERANCE, errors


def test_an_official_file_loads_in_eval_mode_with_its_architecture_read_off_the_tensors(
    official_weights: Path,
) -> None:
    generator, description, _ = load_generator(official_weights)
    assert not generator.training
    assert generator.config["n_feats"] == 16 and generator.config["num_res_blocks"] == [1, 1, 1, 1]
    assert description.startswith("official TTSR state dict (104 tensors)")


def test_default_size_official_layout_loads(tmp_path: Path) -> None:
    """A 316-key official file (n_feats 64, 16+16+8+4) with DataParallel prefixes and LTE_copy."""
    source = TTSRGenerator(vgg_weights="random")
    state_dict = project_to_official_state_dict(source.state_dict())
    assert len(state_dict) == 316
    state_dict |= {
        key.replace("LTE.", "LTE_copy.", 1): v for key, v in state_dict.items() if key.startswith("LTE.")
    }
    torch.save({f"module.{key}": value for key, value in state_dict.items()}, tmp_path / "TTSR.pt")
    weights = read_generator_weights(tmp_path / "TTSR.pt")
    assert weights.kind == "official" and weights.config == {
        "n_feats": 64,
        "num_res_blocks": [16, 16, 8, 4],
        "bicubic_residual": False,  # the official MainNet has no global skip
    }
    assert any(note.startswith("stripped 'module.' from") for note in weights.notes)
    generator = load_generator(tmp_path / "TTSR.pt").generator
    for key, value in source.state_dict().items():
        assert torch.equal(generator.state_dict()[key], value), key


def test_sub_mean_must_be_the_imagenet_normalisation() -> None:
    state_dict = project_to_official_state_dict(tiny_generator().state_dict())
    assert "lte.sub_mean.weight" not in official_to_project_state_dict(state_dict)[0]
    state_dict["LTE.sub_mean.bias"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="ImageNet normalisation"):
        official_to_project_state_dict(state_dict)


# ------------------------------------------------------------------------------ the three kinds
def test_every_kind_gives_the_same_generator(
    official_weights: Path, tmp_path: Path, run_checkpoint: Path
) -> None:
    official = load_generator(official_weights).generator
    save_generator(official, tmp_path / "g.ckpt")
    payload = torch.load(tmp_path / "g.ckpt", weights_only=True)
    assert payload["format"] == GENERATOR_FORMAT and payload["version"] == GENERATOR_FORMAT_VERSION
    assert payload["generator_config"] == official.config
    restored = load_generator(tmp_path / "g.ckpt").generator
    for key, value in official.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key

    run = read_generator_weights(run_checkpoint)
    assert run.kind == "run" and run.config["n_feats"] == 8 and "epoch 1, global step 1" in run.description
    trained = torch.load(run_checkpoint, weights_only=True)["state_dict"]
    generator = load_generator(run_checkpoint).generator
    for key, value in generator.state_dict().items():
        assert torch.equal(trained[f"generator.{key}"], value), key


def test_version_1_generator_files_with_the_old_flag_names_still_load(tmp_path: Path) -> None:
    generator = tiny_generator(use_soft_attention=False)
    old_config = {**generator.config, "hard_attention": True, "soft_attention": False}
    del old_config["use_hard_attention"], old_config["use_soft_attention"]
    state_dict = generator.state_dict()
    torch.save(
        {"format": GENERATOR_FORMAT, "version": 1, "generator_config": old_config, "state_dict": state_dict},
        tmp_path / "v1.ckpt",
    )
    loaded = load_generator(tmp_path / "v1.ckpt").generator
    assert loaded.config == generator.config
    for key, value in state_dict.items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_init_weights_accepts_every_kind_and_names_what_differs(
    official_weights: Path, run_checkpoint: Path, tmp_path: Path
) -> None:
    official = load_generator(official_weights).generator
    save_generator(official, tmp_path / "g.ckpt")
    for path in (official_weights, tmp_path / "g.ckpt"):
        # the size of official_small_G.pt (fixtures/official/README.md), not the tiny one
        generator = TTSRGenerator(n_feats=16, num_res_blocks=[1, 1, 1, 1], vgg_weights="random")
        load_generator_weights(generator, path)
        for key, value in official.state_dict().items():
            assert torch.equal(generator.state_dict()[key], value), (path, key)
    generator = tiny_generator(seed=5)
    load_generator_weights(generator, run_checkpoint)
    assert torch.equal(
        generator.main_net.SFE.conv_head.weight,
        load_generator(run_checkpoint).generator.main_net.SFE.conv_head.weight,
    )

    with pytest.raises(CheckpointError) as error:
        load_generator_weights(tiny_generator(n_feats=12, csfi=False), tmp_path / "g.ckpt")
    message = str(error.value)
    assert message.startswith(f"init_weights={tmp_path / 'g.ckpt'}: its generator differs from this run's:")
    assert "n_feats=16 (this run: 12)" in message and "csfi=True (this run: False)" in message
    assert "\n" not in message


def test_key_problems_are_listed_together_on_one_line(tmp_path: Path) -> None:
    state_dict = project_to_official_state_dict(tiny_generator().state_dict())
    del state_dict["MainNet.RB21.0.conv2.bias"]
    state_dict["MainNet.extra.weight"] = torch.zeros(1)
    state_dict["LTE.slice2.5.bias"] = torch.zeros(7)
    torch.save(state_dict, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as error:
        load_generator(tmp_path / "bad.pt")
    message = str(error.value)
    assert message.startswith(f"ckpt={tmp_path / 'bad.pt'} does not fit TTSRGenerator:")
    assert "1 unknown keys: main_net.extra.weight" in message
    assert "1 missing keys: main_net.RB21.0.conv2.bias" in message
    assert "1 mis-shaped keys: lte.slice2.5.bias (7,) (expected (128,))" in message
    assert "\n" not in message


class _NotATensor:
    pass


def broken_files(tmp_path: Path, run_checkpoint: Path) -> dict[str, tuple[Path, str]]:
    """Each broken file and the message its error must carry."""
    files: dict[str, tuple[Path, str]] = {}
    files["missing"] = (tmp_path / "nowhere.ckpt", "no file there")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(run_checkpoint.read_bytes()[: run_checkpoint.stat().st_size // 2])
    files["truncated"] = (truncated, "cannot be read as a torch file")
    text = tmp_path / "notes.txt"
    text.write_text("these are not weights\n")
    files["text"] = (text, "cannot be read")
    objects = tmp_path / "objects.pt"
    torch.save({"model": _NotATensor()}, objects, pickle_module=pickle)
    files["python objects"] = (objects, "Python objects other than tensors")
    unknown = tmp_path / "unknown.pt"
    torch.save({"encoder.weight": torch.zeros(2)}, unknown)
    files["unknown layout"] = (unknown, "not a checkpoint this suite knows")
    future = tmp_path / "future.ckpt"
    torch.save({"format": GENERATOR_FORMAT, "version": 99, "generator_config": {}, "state_dict": {}}, future)
    files["future version"] = (future, "version 99 is not supported")
    nan = tmp_path / "nan.pt"
    state_dict = project_to_official_state_dict(tiny_generator().state_dict())
    state_dict["MainNet.SFE.conv_head.bias"][0] = float("nan")
    torch.save(state_dict, nan)
    files["non-finite"] = (nan, "1 tensor(s) hold NaN or infinity (main_net.SFE.conv_head.bias)")
    other = tmp_path / "other_module.ckpt"
    checkpoint = torch.load(run_checkpoint, weights_only=True)
    checkpoint["hyper_parameters"] = {"generator": {"_target_": "somewhere.Else"}}
    torch.save(checkpoint, other)
    files["another module's checkpoint"] = (other, "not a TTSRGenerator config")
    return files


def test_each_broken_file_is_one_line_naming_the_file(tmp_path: Path, run_checkpoint: Path) -> None:
    for case, (path, expected) in broken_files(tmp_path, run_checkpoint).items():
        with pytest.raises(CheckpointError) as error:
            load_generator(path, key="ckpt")
        message = str(error.value)
        assert message.startswith(f"ckpt={path}"), (case, message)
        assert expected in message, (case, message)
        assert "\n" not in message, (case, message)


def test_a_run_checkpoint_with_nonfinite_weights_is_never_written() -> None:
    checkpoint = {
        "state_dict": {"generator.w": torch.tensor([1.0, float("inf")]), "lte_copy.w": torch.ones(1)}
    }
    with pytest.raises(CheckpointError, match="run checkpoint about to be written: 1 tensor"):
        strip_frozen_weights(checkpoint, ("lte_copy.",))
