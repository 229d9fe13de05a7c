"""Result files of an evaluation: per image, per set, as CSV, JSON and Markdown (plain Python).

Rows are what :meth:`ttsr_lightning.evaluation.EvaluationModule.rows` produces (one per image and
protocol; keys ``set``, ``set_index``, ``index``, ``image``, ``ref``, ``reference``, ``protocol``,
``protocol_index`` and the measures ``psnr``, ``ssim``, ``psnr_bicubic``, ``ssim_bicubic``). Files
written into a run's folder:

- ``test_per_image.csv``: one row per image and protocol, in set order, then protocol, then dataset order;
- ``test_per_set.csv`` and ``results.md``: per set and protocol its reference policy, the number of
  images and the mean of each measure (model and bicubic baseline); with several protocols
  ``results.md`` also has the summary of each protocol on its own reference policy, and
  ``protocols.png`` plots it;
- ``results.json``: the provenance (how the numbers were obtained: weights, protocols, commit, ...),
  the per-set means, the protocol summary and every row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ttsr_lightning.files import atomic_write, write_csv, write_json, write_text

MEASURES = ("psnr", "ssim", "psnr_bicubic", "ssim_bicubic")
# the files write_results writes (protocols.png only with several protocols)
RESULT_FILES = ("test_per_image.csv", "test_per_set.csv", "results.md", "results.json", "protocols.png")
IMAGE_COLUMNS = ("set", "image", "ref", "reference", "protocol", *MEASURES)


def sort_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows in set order (dataloader), then protocol, then dataset order; ValueError naming a row
    that appears twice (an image evaluated twice, e.g. by padding a rank's share)."""
    ordered = sorted(
        (dict(row) for row in rows), key=lambda row: (row["set_index"], row["protocol_index"], row["index"])
    )
    seen: set[tuple[int, int, int]] = set()
    for row in ordered:
        key = (row["set_index"], row["protocol_index"], row["index"])
        if key in seen:
            raise ValueError(
                f"evaluation results: image {row['image']!r} of set {row['set']} "
                f"({row['protocol']}) appears twice"
            )
        seen.add(key)
    return ordered


def per_set_results(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per set and protocol (in the rows' order): set, reference, protocol, images, and the
    mean of each measure."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["set"], row["protocol"]), []).append(row)
    return [
        {
            "set": set_name,
            "reference": group[0]["reference"],
            "protocol": protocol,
            "images": len(group),
            **{measure: sum(row[measure] for row in group) / len(group) for measure in MEASURES},
        }
        for (set_name, protocol), group in groups.items()
    ]


def protocol_summary(
    set_results: Sequence[Mapping[str, Any]], protocols: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Each protocol's own numbers: its measures on the CUFED5 set of its reference policy
    (``CUFED5_<cufed5_reference>``) when that set was evaluated, with its source and known numbers."""
    summary = []
    for protocol in protocols:
        own_set = f"CUFED5_{protocol['cufed5_reference']}"
        result = next(
            (row for row in set_results if row["set"] == own_set and row["protocol"] == protocol["name"]),
            None,
        )
        summary.append(
            {
                "protocol": protocol["name"],
                "set": own_set if result else f"{own_set} (not evaluated)",
                "psnr": result["psnr"] if result else None,
                "ssim": result["ssim"] if result else None,
                "source": protocol["source"],
                "known": "; ".join(protocol["known"]),
            }
        )
    return summary


def markdown_table(results: Sequence[Mapping[str, Any]]) -> str:
    """The per-set results as a Markdown table, PSNR in dB to 3 decimals and SSIM to 4."""
    lines = [
        "| set | reference | protocol | images | PSNR | SSIM | bicubic PSNR | bicubic SSIM |",
        "|:--|:--|:--|--:|--:|--:|--:|--:|",
    ]
    for row in results:
        lines.append(
            f"| {row['set']} | {row['reference']} | {row['protocol']} | {row['images']} | {row['psnr']:.3f} "
            f"| {row['ssim']:.4f} | {row['psnr_bicubic']:.3f} | {row['ssim_bicubic']:.4f} |"
        )
    return "\n".join(lines)


def protocol_table(summary: Sequence[Mapping[str, Any]]) -> str:
    """Each protocol on its own reference policy, as Markdown (what each codebase would publish)."""
    lines = ["| protocol | evaluated on | PSNR | SSIM | known numbers under it |", "|:--|:--|--:|--:|:--|"]
    for row in summary:
        psnr = "–" if row["psnr"] is None else f"{row['psnr']:.3f}"
        ssim = "–" if row["ssim"] is None else f"{row['ssim']:.4f}"
        lines.append(f"| {row['protocol']} | {row['set']} | {psnr} | {ssim} | {row['known']} |")
    return "\n".join(lines)


def plot_protocols(
    summary: Sequence[Mapping[str, Any]], set_results: Sequence[Mapping[str, Any]], path: Path, title: str
) -> None:
    """Bars: the checkpoint's PSNR under every protocol, on the protocol's own reference policy and
    on the level-1 references (when evaluated), so the spread of the conventions is visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["protocol"] for row in summary]
    own = [row["psnr"] or 0.0 for row in summary]
    level1 = {row["protocol"]: row["psnr"] for row in set_results if row["set"] == "CUFED5_L1"}
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2.5, 3.8), dpi=120)
    positions = range(len(names))
    ax.bar([p - 0.2 for p in positions], own, width=0.4, label="its own reference policy", color="tab:blue")
    if level1:
        ax.bar(
            [p + 0.2 for p in positions],
            [level1.get(n) or 0.0 for n in names],
            width=0.4,
            label="CUFED5 L1",
            color="tab:orange",
        )
    for position, row in zip(positions, summary, strict=True):
        if row["psnr"] is not None:
            ax.annotate(
                f"{row['psnr']:.2f}", (position - 0.2, row["psnr"]), ha="center", va="bottom", fontsize=7
            )
    values = [v for v in [*own, *level1.values()] if v]
    if values:
        ax.set_ylim(min(values) - 1.0, max(values) + 0.5)
    ax.set_xticks(
        list(positions), [f"{row['protocol']}\n({row['set'].split(' ')[0]})" for row in summary], fontsize=7
    )
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda file: fig.savefig(file, format="png"))
    plt.close(fig)


def write_results(
    rows: Sequence[Mapping[str, Any]], output_dir: Path, provenance: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Writes the files of the module docstring; returns the per-set results. ``provenance["protocols"]``
    (a list of protocol dicts, as :meth:`Protocol.as_dict`) gives the protocol summary."""
    ordered = sort_rows(rows)
    set_results = per_set_results(ordered)
    protocols = list(provenance.get("protocols") or [])
    summary = protocol_summary(set_results, protocols)
    output_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(output_dir / "test_per_image.csv", [{k: row[k] for k in IMAGE_COLUMNS} for row in ordered])
    _write_csv(output_dir / "test_per_set.csv", set_results)
    described = "; ".join(
        f"{key}: {value}" for key, value in provenance.items() if not isinstance(value, dict | list)
    )
    markdown = markdown_table(set_results)
    if len(protocols) > 1:
        markdown += "\n\n" + protocol_table(summary)
        plot_protocols(
            summary, set_results, output_dir / "protocols.png", "PSNR of one checkpoint under every protocol"
        )
    sources = "\n".join(f"- {protocol['name']}: {protocol['source']}" for protocol in protocols)
    write_text(output_dir / "results.md", f"{markdown}\n\n{described}\n\n{sources}\n")
    document = {"provenance": dict(provenance), "sets": set_results, "protocols": summary, "images": ordered}
    write_json(output_dir / "results.json", document)  # an infinite PSNR (SR = HR) becomes null
    return set_results


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        write_csv(path, rows)
