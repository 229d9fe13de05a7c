"""Parameter table: official counts, every paper row read from the experiment configs, parts that add up,
and the paper's Table 3 counts as this suite's generator counts in units of 2^20."""

from __future__ import annotations

import pytest

from ttsr_lightning.tools.params import PAPER_ROWS, PAPER_UNIT, experiment_settings, main, parameter_rows


@pytest.fixture(scope="module")
def rows() -> dict:
    return {row.setting: row for row in parameter_rows()}


def test_settings_come_from_the_experiment_configs() -> None:
    settings = experiment_settings()
    assert list(settings) == list(PAPER_ROWS)
    assert settings["Base"] == {
        "n_feats": 64,
        "num_res_blocks": [16, 16, 8, 4],
        "use_hard_attention": False,
        "use_soft_attention": False,
        "learnable_extractor": False,
        "csfi": False,
        "bicubic_residual": False,  # the paper's output: no bicubic skip
    }
    assert settings["Base+TT (C96)"]["n_feats"] == 96 and settings["Base+TT+CSFI = TTSR"]["csfi"] is True


def test_ttsr_row_matches_the_official_counts(rows: dict) -> None:
    ttsr = rows["Base+TT+CSFI = TTSR"]
    assert ttsr.main_net == 6_174_275
    assert ttsr.lte == ttsr.lte_trainable == 555_328
    assert ttsr.generator == ttsr.generator_trainable == 6_729_603
    assert ttsr.discriminator == 17_821_473
    assert ttsr.main_net_parts["SFE"] == 1_220_416
    assert ttsr.main_net_parts["CSFI"] == 188_672 + 492_160
    assert ttsr.main_net_parts["output tail"] == 137_539


def test_the_paper_counts_are_our_generators_in_units_of_2_to_the_20(rows: dict) -> None:
    """Table 3 as printed: 4.42M, 6.42M, 6.53M, 9.10M. This confirms the no-CSFI layout of MainNet."""
    table3 = {
        "Base+HA+SA+LTE = Base+TT (C64)": (4_637_315, "4.42"),
        "Base+TT+CSFI = TTSR": (6_729_603, "6.42"),
        "Base+TT (C80)": (6_850_131, "6.53"),
        "Base+TT (C96)": (9_539_875, "9.10"),
    }
    for setting, (count, printed) in table3.items():
        assert rows[setting].generator == count, setting
        assert f"{count / PAPER_UNIT:.2f}" == printed, setting
        assert f"{count / 1e6:.2f}" != printed  # not millions: the paper's M is 2^20


def test_ablation_rows(rows: dict) -> None:
    assert (rows["Base"].lte, rows["Base"].main_net_parts["fusion heads"]) == (0, 0)
    assert rows["Base+HA"].lte == 555_328 and rows["Base+HA"].lte_trainable == 0
    assert rows["Base+HA+SA"].generator_trainable == rows["Base+HA+SA"].main_net == 4_081_987
    assert rows["Base+HA+SA+LTE = Base+TT (C64)"].lte_trainable == 555_328
    assert [rows[f"Base+TT (C{n})"].main_net for n in (80, 96)] == [6_294_803, 8_984_547]
    for row in rows.values():
        assert sum(row.main_net_parts.values()) == row.main_net
        assert row.generator == row.main_net + row.lte


def test_wider_csfi_networks_match_the_official_counts() -> None:
    wider = parameter_rows({"C80": {"n_feats": 80}, "C96": {"n_feats": 96}})
    assert [row.main_net for row in wider] == [9_562_963, 13_689_699]


def test_command_prints_a_markdown_table(capsys: pytest.CaptureFixture[str]) -> None:
    main()
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| setting | generator | M (2^20) |") and lines[1].startswith("|---|")
    assert len(lines) == 2 + len(PAPER_ROWS)
    assert lines[-1].startswith(
        "| Base+TT+CSFI = TTSR | 6,729,603 | 6.42M | 6,729,603 | 6,174,275 | 555,328 | 555,328 |"
    )
