"""The generator interface's hooks: TTSR's groups and texture extractor, the defaults for any module."""

from __future__ import annotations

from helpers.config import TINY_GENERATOR
from helpers.other_generator import DetailConvGenerator
from ttsr_lightning.models import TTSRGenerator
from ttsr_lightning.models.interface import Generator, architecture, parameter_groups, texture_extractor


def test_ttsr_groups_are_its_main_network_and_its_trained_lte_in_parameter_order() -> None:
    generator = TTSRGenerator(**TINY_GENERATOR)
    groups = parameter_groups(generator)
    assert list(groups) == ["generator", "lte"]
    lte_ids = {id(p) for p in generator.lte.parameters()}  # type: ignore[union-attr]
    assert [id(p) for p in groups["lte"]] == [id(p) for p in generator.lte.parameters()]  # type: ignore[union-attr]
    assert [id(p) for p in groups["generator"]] == [
        id(p) for p in generator.parameters() if id(p) not in lte_ids
    ]
    assert texture_extractor(generator) is generator.lte
    assert architecture(generator) == generator.config


def test_ttsr_without_a_trained_lte_has_an_empty_lte_group_and_base_no_extractor() -> None:
    frozen = TTSRGenerator(**TINY_GENERATOR, learnable_extractor=False)
    groups = parameter_groups(frozen)
    assert list(groups) == ["generator", "lte"] and groups["lte"] == []
    assert [id(p) for p in groups["generator"]] == [id(p) for p in frozen.parameters() if p.requires_grad]
    assert texture_extractor(frozen) is frozen.lte
    switches = {"use_hard_attention": False, "use_soft_attention": False, "learnable_extractor": False}
    base = TTSRGenerator(**TINY_GENERATOR, **switches)
    assert parameter_groups(base)["lte"] == [] and texture_extractor(base) is None


def test_a_module_without_hooks_gets_the_defaults() -> None:
    generator = DetailConvGenerator(channels=4)
    generator.body[0].requires_grad_(False)
    groups = parameter_groups(generator)
    assert list(groups) == ["generator"]
    assert [id(p) for p in groups["generator"]] == [id(p) for p in generator.parameters() if p.requires_grad]
    assert texture_extractor(generator) is None and architecture(generator) == {}
    assert isinstance(generator, Generator) and isinstance(TTSRGenerator(**TINY_GENERATOR), Generator)
