"""TTSRGenerator: outputs and ranges, ablation switches, gradients, validation, and its Hydra config."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from helpers.checkpoints import one_batch_run_checkpoint
from helpers.config import TINY_GENERATOR, compose_config
from ttsr_lightning.checkpoints.loading import load_generator
from ttsr_lightning.config_paths import packaged_option
from ttsr_lightning.models import GeneratorOutput, LeanSearchTransfer, TTSRGenerator

CONFIG = packaged_option("model/generator", "ttsr")  # conf/model/generator/ttsr.yaml


def small(
    use_hard_attention: bool = True, use_soft_attention: bool = True, learnable_extractor: bool = True
) -> TTSRGenerator:
    return TTSRGenerator(
        **TINY_GENERATOR,
        use_hard_attention=use_hard_attention,
        use_soft_attention=use_soft_attention,
        learnable_extractor=learnable_extractor,
    )


def images(batch: int = 2, lr_size: tuple[int, int] = (6, 5), ref_size: tuple[int, int] = (20, 28)) -> dict:
    generator = torch.Generator().manual_seed(0)
    h, w = lr_size
    return {
        "lr": torch.rand(batch, 3, h, w, generator=generator) * 2 - 1,
        "lr_up": torch.rand(batch, 3, 4 * h, 4 * w, generator=generator) * 2 - 1,
        "ref": torch.rand(batch, 3, *ref_size, generator=generator) * 2 - 1,
        "ref_down_up": torch.rand(batch, 3, *ref_size, generator=generator) * 2 - 1,
    }


def test_outputs_shapes_and_ranges() -> None:
    out = small()(**images())
    assert isinstance(out, GeneratorOutput)
    assert out.sr.shape == (2, 3, 24, 20) and out.sr.min() >= -1 and out.sr.max() <= 1
    assert out.soft_attention is not None and out.hard_index is not None
    assert out.soft_attention.shape == (2, 1, 6, 5)
    assert out.soft_attention.min() >= 0 and out.soft_attention.max() <= 1 + 1e-6
    assert out.hard_index.shape == (2, 30) and out.hard_index.dtype == torch.int64
    assert out.hard_index.min() >= 0 and out.hard_index.max() < 5 * 7  # Ref lv3 is 5x7
    assert out.t_lv3 is not None and out.t_lv2 is not None and out.t_lv1 is not None
    assert out.t_lv3.shape == (2, 256, 6, 5) and out.t_lv2.shape == (2, 128, 12, 10)
    assert out.t_lv1.shape == (2, 64, 24, 20)
    assert min(out.t_lv3.min(), out.t_lv2.min(), out.t_lv1.min()) >= 0


def test_state_dict_holds_the_lte_and_the_main_net_only() -> None:
    prefixes = {key.split(".", 1)[0] for key in small().state_dict()}
    assert prefixes == {"lte", "main_net"}


def test_base_has_no_texture_transfer() -> None:
    generator = small(use_hard_attention=False, use_soft_attention=False, learnable_extractor=False)
    assert generator.lte is None and generator.search_transfer is None
    inputs = images()
    out = generator(**inputs)
    assert out.sr.shape == (2, 3, 24, 20)
    assert out[1:] == (None, None, None, None, None)
    inputs["ref"] = torch.zeros(2, 3, 8, 8)  # ignored
    torch.testing.assert_close(generator(**inputs).sr, out.sr)


def test_soft_attention_off_still_returns_s() -> None:
    out = small(use_soft_attention=False)(**images())
    assert out.soft_attention is not None and out.soft_attention.shape == (2, 1, 6, 5)


def test_lte_learns_through_s_and_t_only() -> None:
    generator = small()
    inputs = {name: image.requires_grad_() for name, image in images(batch=1).items()}
    generator(**inputs).sr.sum().backward()
    assert generator.lte is not None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.lte.parameters())
    assert inputs["lr"].grad is not None
    assert all(inputs[name].grad is None for name in ("lr_up", "ref", "ref_down_up"))  # detached


def test_frozen_extractor() -> None:
    generator = small(learnable_extractor=False)
    assert generator.lte is not None
    assert not any(p.requires_grad for p in generator.lte.parameters())
    assert all(p.requires_grad for p in generator.main_net.parameters())


def test_config_rebuilds_the_same_architecture() -> None:
    # not the tiny sizes: a width and four distinct stage depths, so a value dropped or swapped shows
    generator = TTSRGenerator(n_feats=16, num_res_blocks=[2, 1, 1, 3], csfi=False, vgg_weights="random")
    assert generator.config == {
        "n_feats": 16,
        "num_res_blocks": [2, 1, 1, 3],
        "use_hard_attention": True,
        "use_soft_attention": True,
        "learnable_extractor": True,
        "csfi": False,
        "bicubic_residual": False,
    }
    rebuilt = TTSRGenerator(**generator.config, vgg_weights="random")
    shapes = {key: value.shape for key, value in generator.state_dict().items()}
    assert {key: value.shape for key, value in rebuilt.state_dict().items()} == shapes


def test_argument_validation() -> None:
    with pytest.raises(ValueError, match="use_hard_attention=False"):
        small(use_hard_attention=False)  # soft attention and the learnable LTE default to True
    with pytest.raises(ValueError, match="use_hard_attention=False"):
        small(use_hard_attention=False, use_soft_attention=False)
    with pytest.raises(ValueError, match="search_transfer must be one of"):
        TTSRGenerator(search_transfer="fast", vgg_weights="random")
    with pytest.raises(ValueError, match=r"relevance_kernel must be one of \['torch', 'triton'\]"):
        TTSRGenerator(relevance_kernel="cuda", vgg_weights="random")


def test_input_shape_validation() -> None:
    generator = small()
    inputs = images()
    with pytest.raises(ValueError, match="lr_up must be 4x lr"):
        generator(**{**inputs, "lr_up": inputs["lr_up"][..., :-4]})
    with pytest.raises(ValueError, match="ref and ref_down_up"):
        generator(**{**inputs, "ref_down_up": inputs["ref_down_up"][..., :-4]})


def test_config_has_exactly_the_constructor_arguments() -> None:
    config = OmegaConf.to_container(CONFIG)
    assert isinstance(config, dict)
    parameters = inspect.signature(TTSRGenerator).parameters
    assert set(config) == {"_target_"} | set(parameters)
    defaults = {name: parameter.default for name, parameter in parameters.items()}
    assert {**config, "num_res_blocks": tuple(config["num_res_blocks"])} == {
        "_target_": "ttsr_lightning.models.TTSRGenerator",
        **defaults,
    }


def test_config_instantiates_with_hydra_lists() -> None:
    # a second block in stage 2: the list reaches the network, not only its config
    generator = instantiate(CONFIG, **{**TINY_GENERATOR, "num_res_blocks": [1, 2, 1, 1]}, csfi=False)
    assert isinstance(generator, TTSRGenerator)
    assert generator.config["num_res_blocks"] == [1, 2, 1, 1] and len(generator.main_net.RB11) == 2


def test_batched_extractor_gives_the_same_outputs_and_gradients() -> None:
    torch.manual_seed(0)
    generator = TTSRGenerator(**TINY_GENERATOR)
    inputs = [torch.rand(2, 3, 8, 8) * 2 - 1] + [torch.rand(2, 3, 32, 32) * 2 - 1 for _ in range(3)]
    outputs, gradients = [], []
    for batched in (False, True):
        generator.batched_extractor = batched
        generator.zero_grad()
        out = generator(*inputs)
        out.sr.mean().backward()
        outputs.append(out)
        gradients.append([p.grad.clone() for p in generator.lte.parameters()])
    three_passes, one_pass = outputs
    assert torch.equal(three_passes.hard_index, one_pass.hard_index)
    for name in ("sr", "soft_attention", "t_lv3", "t_lv2", "t_lv1"):
        torch.testing.assert_close(getattr(one_pass, name), getattr(three_passes, name), rtol=0, atol=1e-6)
    for a, b in zip(*gradients, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("csfi", [True, False])
def test_bicubic_residual_starts_as_the_bicubic_upsampler_and_learns_a_correction(csfi: bool) -> None:
    generator = TTSRGenerator(**TINY_GENERATOR, csfi=csfi, bicubic_residual=True)
    inputs = images(batch=2)
    out = generator(**inputs)
    assert torch.equal(out.sr, inputs["lr_up"].clamp(-1, 1))  # untrained: exactly bicubic
    out.sr.sub(inputs["lr_up"] * 0.5).abs().mean().backward()
    assert generator.main_net.output_conv.weight.grad.abs().sum() > 0  # the zero start still learns
    with torch.no_grad():
        generator.main_net.output_conv.bias.fill_(0.1)
    corrected = generator(**inputs).sr
    assert torch.allclose(corrected, (inputs["lr_up"] + 0.1).clamp(-1, 1), atol=1e-6)


def test_bicubic_residual_is_off_in_the_paper_network() -> None:
    paper = TTSRGenerator(**TINY_GENERATOR)
    assert paper.config["bicubic_residual"] is False
    assert paper.main_net.output_conv.weight.abs().sum() > 0  # default initialisation


def _relevance_kernel(generator: object) -> str:
    assert isinstance(generator, TTSRGenerator)
    assert isinstance(generator.search_transfer, LeanSearchTransfer)
    return generator.search_transfer.relevance_kernel


def test_relevance_kernel_is_off_by_default_and_set_by_the_hydra_config(tmp_path: Path) -> None:
    """``model.generator.relevance_kernel=triton`` reaches the generator's lean search; the composed
    default is the torch passes."""
    default = compose_config(tmp_path, tmp_path / "data")
    turned_on = compose_config(tmp_path, tmp_path / "data", ["model.generator.relevance_kernel=triton"])
    assert default.model.generator.relevance_kernel == "torch"
    assert _relevance_kernel(instantiate(default.model.generator)) == "torch"
    assert _relevance_kernel(instantiate(turned_on.model.generator)) == "triton"
    constructed = TTSRGenerator(**TINY_GENERATOR)
    assert _relevance_kernel(constructed) == "torch"


def test_the_relevance_kernel_is_the_loading_commands_choice_never_the_files(tmp_path: Path) -> None:
    """Like search_transfer, the kernel is an implementation, not the network: evaluate / infer choose it
    (their relevance_kernel setting), whatever the run that wrote the checkpoint used; a checkpoint
    written before the setting existed (no such key) loads the same."""
    path = one_batch_run_checkpoint(
        tmp_path / "triton.ckpt", {**TINY_GENERATOR, "relevance_kernel": "triton"}
    )
    assert _relevance_kernel(load_generator(path).generator) == "torch"
    assert _relevance_kernel(load_generator(path, relevance_kernel="triton").generator) == "triton"
    older = torch.load(path, weights_only=True)
    del older["hyper_parameters"]["generator"]["relevance_kernel"]
    torch.save(older, tmp_path / "older.ckpt")
    loaded = load_generator(tmp_path / "older.ckpt").generator
    assert _relevance_kernel(loaded) == "torch"
    for name, value in load_generator(path).generator.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
