"""Result files of an evaluation: per image, per set, as CSV, JSON and Markdown (plain Python).

Rows are what :meth:`ttsr_lightning.evaluation.EvaluationModule.rows` produces (one per image; keys
``set``, ``set_index``, ``index``, ``image``, ``ref``, ``reference`` and the measures ``psnr``,
``ssim``, ``psnr_bicubic``, ``ssim_bicubic``). Files written into a run's folder:

- ``test_per_image.csv``: one row per image in set order, then dataset order;
- ``test_per_set.csv`` and ``results.md``: per set its reference policy, the number of images and the
  mean of each measure (model and bicubic baseline);
- ``results.json``: the provenance (how the numbers were obtained: weights, protocol, commit, ...),
  the per-set means and every image's row.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MEASURES = ("psnr", "ssim", "psnr_bicubic", "ssim_bicubic")
IMAGE_COLUMNS = ("set", "image", "ref", "reference", *MEASURES)


def sort_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows in set order (dataloader), then dataset order; ValueError naming a repeated image."""
    ordered = sorted((dict(row) for row in rows), key=lambda row: (row["set_index"], row["index"]))
    seen: set[tuple[int, int]] = set()
    for row in ordered:
        key = (row["set_index"], row["index"])
        if key in seen:
            raise ValueError(f"evaluation results: image {row['image']!r} of set {row['set']} appears twice")
        seen.add(key)
    return ordered


def per_set_results(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per set (in the rows' order): set, reference, images, and the mean of each measure."""
    sets: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        sets.setdefault(row["set"], []).append(row)
    return [
        {
            "set": name,
            "reference": set_rows[0]["reference"],
            "images": len(set_rows),
            **{measure: sum(row[measure] for row in set_rows) / len(set_rows) for measure in MEASURES},
        }
        for name, set_rows in sets.items()
    ]


def markdown_table(results: Sequence[Mapping[str, Any]]) -> str:
    """The per-set results as a Markdown table, PSNR in dB to 3 decimals and SSIM to 4."""
    lines = [
        "| set | reference | images | PSNR | SSIM | bicubic PSNR | bicubic SSIM |",
        "|:--|:--|--:|--:|--:|--:|--:|",
    ]
    for row in results:
        lines.append(
            f"| {row['set']} | {row['reference']} | {row['images']} | {row['psnr']:.3f} | {row['ssim']:.4f} "
            f"| {row['psnr_bicubic']:.3f} | {row['ssim_bicubic']:.4f} |"
        )
    return "\n".join(lines)


def write_results(
    rows: Sequence[Mapping[str, Any]], output_dir: Path, provenance: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Writes the four files of the module docstring; returns the per-set results."""
    ordered = sort_rows(rows)
    set_results = per_set_results(ordered)
    output_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(output_dir / "test_per_image.csv", [{k: row[k] for k in IMAGE_COLUMNS} for row in ordered])
    _write_csv(output_dir / "test_per_set.csv", set_results)
    described = "; ".join(
        f"{key}: {value}" for key, value in provenance.items() if not isinstance(value, dict | list)
    )
    (output_dir / "results.md").write_text(markdown_table(set_results) + "\n\n" + described + "\n")
    summary = {"provenance": dict(provenance), "sets": set_results, "images": ordered}
    (output_dir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    return set_results


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        return
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
