"""Parameter table: official counts at default settings, every ablation row, parts that add up."""

from __future__ import annotations

import pytest

from ttsr_lightning.tools.params import ABLATION_SETTINGS, main, parameter_rows


@pytest.fixture(scope="module")
def rows() -> dict:
    return {row.setting: row for row in parameter_rows()}


def test_ttsr_row_matches_the_official_counts(rows: dict) -> None:
    ttsr = rows["Base+TT+CSFI (TTSR)"]
    assert ttsr.main_net == 6_174_275
    assert ttsr.lte == ttsr.lte_trainable == 555_328
    assert ttsr.generator == ttsr.generator_trainable == 6_729_603
    assert ttsr.discriminator == 17_821_473
    assert ttsr.main_net_parts["SFE"] == 1_220_416
    assert ttsr.main_net_parts["CSFI"] == 188_672 + 492_160
    assert ttsr.main_net_parts["output tail"] == 137_539


def test_ablation_rows(rows: dict) -> None:
    assert list(rows) == list(ABLATION_SETTINGS)
    assert (rows["Base"].lte, rows["Base"].main_net_parts["fusion heads"]) == (0, 0)
    assert rows["Base+HA"].lte == 555_328 and rows["Base+HA"].lte_trainable == 0
    assert rows["Base+HA+SA"].generator_trainable == rows["Base+HA+SA"].main_net == 4_081_987
    assert rows["Base+HA+SA+LTE"].lte_trainable == 555_328
    assert [rows[f"Base+TT (C{n})"].main_net for n in (64, 80, 96)] == [4_081_987, 6_294_803, 8_984_547]
    for row in rows.values():
        assert sum(row.main_net_parts.values()) == row.main_net
        assert row.generator == row.main_net + row.lte


def test_wider_csfi_networks_match_the_official_counts() -> None:
    wider = parameter_rows({"C80": {"n_feats": 80}, "C96": {"n_feats": 96}})
    assert [row.main_net for row in wider] == [9_562_963, 13_689_699]


def test_command_prints_a_markdown_table(capsys: pytest.CaptureFixture[str]) -> None:
    main()
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| setting | generator |") and lines[1].startswith("|---|")
    assert len(lines) == 2 + len(ABLATION_SETTINGS)
    assert lines[-1].startswith(
        "| Base+TT+CSFI (TTSR) | 6,729,603 | 6,729,603 | 6,174,275 | 555,328 | 555,328 |"
    )
