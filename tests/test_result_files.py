"""Result tables: the margins over bicubic and over the LR as reference, and a paper table's layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ttsr_lightning.result_files import margins, per_set_results, sort_rows, write_results, write_table_layout


def set_row(name: str, psnr: float, ssim: float, protocol: str = "ttsr_official") -> dict:
    return {
        "set": name,
        "reference": name,
        "protocol": protocol,
        "images": 2,
        "psnr": psnr,
        "ssim": ssim,
        "psnr_bicubic": 28.0,
        "ssim_bicubic": 0.80,
    }


def test_margins_over_bicubic_and_over_the_lr_as_reference() -> None:
    rows = [
        set_row("CUFED5_L1", 29.5, 0.85),
        set_row("CUFED5_LR", 29.0, 0.83),
        set_row("CUFED5_L1", 28.5, 0.84, protocol="mmagic"),  # no mmagic LR set: no LR margin
        set_row("Sun80", 27.0, 0.78),
    ]
    found = {(row["set"], row["protocol"]): row for row in margins(rows)}
    assert found["CUFED5_L1", "ttsr_official"]["psnr_over_bicubic"] == pytest.approx(1.5)
    assert found["CUFED5_L1", "ttsr_official"]["psnr_over_lr_reference"] == pytest.approx(0.5)
    assert found["CUFED5_L1", "ttsr_official"]["ssim_over_lr_reference"] == pytest.approx(0.02)
    assert found["CUFED5_LR", "ttsr_official"]["psnr_over_lr_reference"] is None  # not against itself
    assert found["CUFED5_L1", "mmagic"]["psnr_over_lr_reference"] is None
    assert found["Sun80", "ttsr_official"]["psnr_over_bicubic"] == pytest.approx(-1.0)


def test_results_json_and_markdown_carry_the_margins(tmp_path: Path) -> None:
    rows = []
    for set_index, (name, psnr) in enumerate((("CUFED5_L1", 29.5), ("CUFED5_LR", 29.0))):
        for index in range(2):
            rows.append(
                {
                    "set": name,
                    "set_index": set_index,
                    "index": index,
                    "image": f"00{index}_0",
                    "ref": "r",
                    "reference": name,
                    "protocol": "ttsr_official",
                    "protocol_index": 0,
                    "psnr": psnr,
                    "ssim": 0.8,
                    "psnr_bicubic": 28.0,
                    "ssim_bicubic": 0.8,
                }
            )
    ordered = sort_rows(rows)
    write_results(ordered, per_set_results(ordered), tmp_path, {"protocols": []})
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["margins"][0]["psnr_over_lr_reference"] == pytest.approx(0.5)
    assert (
        "| CUFED5_L1 | ttsr_official | +1.500 dB | +0.0000 | +0.500 dB |"
        in (tmp_path / "results.md").read_text()
    )


def test_table_layout_puts_ours_beside_the_papers_numbers(tmp_path: Path) -> None:
    layout = {
        "title": "Table 4",
        "columns": {"L1": "CUFED5_L1", "LR": "CUFED5_LR", "L5": "CUFED5_L5"},
        "paper": {
            "L1": {"psnr": 26.99, "ssim": 0.8, "psnr_verified": True},
            "LR": {"psnr": 26.43, "ssim": 0.782},
        },
    }
    markdown = write_table_layout(
        [set_row("CUFED5_L1", 29.5, 0.85), set_row("CUFED5_LR", 29.0, 0.83)],
        layout,
        "ttsr_official",
        tmp_path,
    )
    assert "| ours | 29.50 / 0.8500 | 29.00 / 0.8300 | – |" in markdown
    assert "| paper | 26.99 / 0.800? | 26.43? / 0.782? | – |" in markdown
    assert (tmp_path / "table.md").read_text() == markdown
    assert (tmp_path / "table.png").stat().st_size > 5_000
