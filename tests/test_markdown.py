"""The one Markdown table writer: alignment rows, blank cells, and the shapes it refuses."""

from __future__ import annotations

import pytest

from ttsr_lightning.markdown import markdown_table, number_cell


def test_a_table_is_its_header_its_alignment_row_and_a_line_per_row() -> None:
    table = markdown_table(("set", "PSNR", "what"), [("CUFED5", 27.1, "stitched"), ("Sun80", "–", "")], "lrl")
    assert table == ("| set | PSNR | what |\n|:--|--:|:--|\n| CUFED5 | 27.1 | stitched |\n| Sun80 | – |  |")


def test_without_align_every_column_is_unmarked_and_none_is_a_blank_cell() -> None:
    table = markdown_table((None, "time"), [("fp32", None)])
    assert table == "| | time |\n|---|---|\n| fp32 | |"


def test_three_dashes_beside_the_colon() -> None:
    assert markdown_table(("a", "b", "c"), [], "-rl", dashes=3) == "| a | b | c |\n|---|---:|:---|"


@pytest.mark.parametrize(
    ("align", "rows", "message"),
    [
        ("lr", [], "align 'lr'"),
        ("lx-", [], "align 'lx-'"),
        ("", [("a", "b")], "row 0 has 2 cells, the header 3"),
    ],
)
def test_a_row_or_an_alignment_that_does_not_fit_the_header_is_refused(
    align: str, rows: list[tuple[str, ...]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        markdown_table(("a", "b", "c"), rows, align)


def test_a_missing_number_is_a_dash() -> None:
    assert number_cell(None, ".3f") == "–"
    assert number_cell(0.5, "+.4f") == "+0.5000"
