"""Result files of an evaluation: per image, per set, as CSV, JSON and Markdown (plain Python).

Rows are what :meth:`ttsr_lightning.evaluation_module.EvaluationModule.rows` produces (one per image and
protocol; keys ``set``, ``set_index``, ``index``, ``image``, ``ref``, ``reference``, ``protocol``,
``protocol_index`` and the measures ``psnr``, ``ssim``, ``psnr_bicubic``, ``ssim_bicubic``, then
``lpips`` and ``lpips_bicubic`` when LPIPS was measured: lower is better; without its weights the
columns are absent and the provenance's ``lpips`` says why). Files written into a run's folder:

- ``test_per_image.csv``: one row per image and protocol, in set order, then protocol, then dataset order;
- ``test_per_set.csv`` and ``results.md``: per set and protocol its reference policy, the number of
  images and the mean of each measure (model and bicubic baseline; :func:`mean_over_images`, the
  mean Lightning logs too); with several protocols
  ``results.md`` also has the summary of each protocol on its own reference policy, and
  ``protocols.png`` plots it;
- ``results.json``: the provenance (how the numbers were obtained: weights, protocols, commit, ...),
  the per-set means, the margins (:func:`margins`), the protocol summary and every row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ttsr_lightning.files import save_figure, write_csv, write_json, write_text
from ttsr_lightning.markdown import MISSING, markdown_table, number_cell

MEASURES = ("psnr", "ssim", "psnr_bicubic", "ssim_bicubic")
# measured when the LPIPS weights are present (lower is better)
LPIPS_MEASURES = ("lpips", "lpips_bicubic")
IMAGE_COLUMNS = ("set", "image", "ref", "reference", "protocol")


def measures_of(rows: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The measures the rows hold: :data:`MEASURES`, then :data:`LPIPS_MEASURES` when measured."""
    extra = tuple(measure for measure in LPIPS_MEASURES if rows and measure in rows[0])
    return (*MEASURES, *extra)


# the files write_results writes (protocols.png only with several protocols)
RESULT_FILES = ("test_per_image.csv", "test_per_set.csv", "results.md", "results.json", "protocols.png")


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


def mean_over_images(values: Sequence[float]) -> float:
    """The mean of one measure over a set's images, summed in the order given; NaN for no image.
    Every per-set mean is this: the ones a command writes or prints (:func:`means_over_images`) and
    the ones Lightning logs (:class:`~ttsr_lightning.metrics.MeanPerImage`)."""
    return sum(values) / len(values) if values else math.nan


def means_over_images(
    rows: Sequence[Mapping[str, Any]], group_by: Sequence[str], measures: Sequence[str]
) -> list[dict[str, Any]]:
    """The :func:`mean_over_images` of each measure over the images of a group: one dict per group of
    rows sharing their values of ``group_by`` (in the order the groups first appear), with those
    values, ``images`` (the group's number of rows) and the means, each summed in the rows' order.
    Every per-set or per-protocol mean a command writes or prints is taken here, from the per-image
    rows."""
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in group_by), []).append(row)
    return [
        {
            **dict(zip(group_by, key, strict=True)),
            "images": len(group),
            **{measure: mean_over_images([row[measure] for row in group]) for measure in measures},
        }
        for key, group in groups.items()
    ]


def per_set_results(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per set and protocol (in the rows' order): set, reference, protocol, images, and the
    mean of each measure (:func:`measures_of`)."""
    return means_over_images(rows, ("set", "reference", "protocol"), measures_of(rows))


def margins(set_results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What the reference brings, per set and protocol: PSNR / SSIM of the model minus the bicubic
    baseline's, and for a set with a reference (``CUFED5_L1``) minus the same images with the LR as
    their own reference (``CUFED5_LR``, when evaluated): texture transfer at work shows as both > 0."""
    by_key = {(row["set"], row["protocol"]): row for row in set_results}
    out = []
    for row in set_results:
        prefix = row["set"].rsplit("_", 1)[0]
        lr_reference = by_key.get((f"{prefix}_LR", row["protocol"]))
        if lr_reference is row:
            lr_reference = None
        out.append(
            {
                "set": row["set"],
                "protocol": row["protocol"],
                "psnr_over_bicubic": row["psnr"] - row["psnr_bicubic"],
                "ssim_over_bicubic": row["ssim"] - row["ssim_bicubic"],
                "psnr_over_lr_reference": None
                if lr_reference is None
                else row["psnr"] - lr_reference["psnr"],
                "ssim_over_lr_reference": None
                if lr_reference is None
                else row["ssim"] - lr_reference["ssim"],
            }
        )
    return out


def margins_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """:func:`margins` as Markdown (dB and SSIM points, signed)."""
    header = (
        "set",
        "protocol",
        "PSNR over bicubic",
        "SSIM over bicubic",
        "PSNR over LR as reference",
        "SSIM over LR as reference",
    )
    cells = []
    for row in rows:
        lr_psnr = row["psnr_over_lr_reference"]
        cells.append(
            (
                row["set"],
                row["protocol"],
                f"{row['psnr_over_bicubic']:+.3f} dB",
                f"{row['ssim_over_bicubic']:+.4f}",
                MISSING if lr_psnr is None else f"{lr_psnr:+.3f} dB",
                number_cell(row["ssim_over_lr_reference"], "+.4f"),
            )
        )
    return markdown_table(header, cells, "llrrrr")


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


def set_results_table(results: Sequence[Mapping[str, Any]]) -> str:
    """The per-set results as a Markdown table, PSNR in dB to 3 decimals, SSIM and LPIPS (when
    measured; lower is better) to 4."""
    lpips = ("lpips", "lpips_bicubic") if "lpips" in measures_of(results) else ()
    header = ["set", "reference", "protocol", "images", "PSNR", "SSIM", "bicubic PSNR", "bicubic SSIM"]
    header += ["LPIPS ↓", "bicubic LPIPS ↓"][: len(lpips)]
    cells = [
        (
            row["set"],
            row["reference"],
            row["protocol"],
            row["images"],
            f"{row['psnr']:.3f}",
            f"{row['ssim']:.4f}",
            f"{row['psnr_bicubic']:.3f}",
            f"{row['ssim_bicubic']:.4f}",
            *(f"{row[measure]:.4f}" for measure in lpips),
        )
        for row in results
    ]
    return markdown_table(header, cells, "lll" + "r" * (len(header) - 3))


def protocol_table(summary: Sequence[Mapping[str, Any]]) -> str:
    """Each protocol on its own reference policy, as Markdown (what each codebase would publish)."""
    header = ("protocol", "evaluated on", "PSNR", "SSIM", "known numbers under it")
    cells = [
        (
            row["protocol"],
            row["set"],
            number_cell(row["psnr"], ".3f"),
            number_cell(row["ssim"], ".4f"),
            row["known"],
        )
        for row in summary
    ]
    return markdown_table(header, cells, "llrrl")


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
    save_figure(path, fig)
    plt.close(fig)


def write_results(
    ordered: Sequence[Mapping[str, Any]],
    set_results: Sequence[Mapping[str, Any]],
    output_dir: Path,
    provenance: Mapping[str, Any],
) -> None:
    """Writes the files of the module docstring from the rows (as :func:`sort_rows` orders them) and
    their :func:`per_set_results`. ``provenance["protocols"]`` (a list of protocol dicts, as
    :meth:`Protocol.as_dict`) gives the protocol summary."""
    protocols = list(provenance.get("protocols") or [])
    summary = protocol_summary(set_results, protocols)
    output_dir.mkdir(parents=True, exist_ok=True)
    columns = (*IMAGE_COLUMNS, *measures_of(ordered))
    _write_csv(output_dir / "test_per_image.csv", [{k: row[k] for k in columns} for row in ordered])
    _write_csv(output_dir / "test_per_set.csv", set_results)
    described = "; ".join(
        f"{key}: {value}" for key, value in provenance.items() if not isinstance(value, dict | list)
    )
    set_margins = margins(set_results)
    markdown = set_results_table(set_results) + "\n\n" + margins_table(set_margins)
    if len(protocols) > 1:
        markdown += "\n\n" + protocol_table(summary)
        plot_protocols(
            summary, set_results, output_dir / "protocols.png", "PSNR of one checkpoint under every protocol"
        )
    sources = "\n".join(f"- {protocol['name']}: {protocol['source']}" for protocol in protocols)
    write_text(output_dir / "results.md", f"{markdown}\n\n{described}\n\n{sources}\n")
    document = {
        "provenance": dict(provenance),
        "sets": set_results,
        "margins": set_margins,
        "protocols": summary,
        "images": ordered,
    }
    write_json(output_dir / "results.json", document)  # an infinite PSNR (SR = HR) becomes null


def write_table_layout(
    set_results: Sequence[Mapping[str, Any]], layout: Mapping[str, Any], protocol: str, output_dir: Path
) -> str:
    """A paper table's layout of one evaluation: one row, a column per set (``layout["columns"]``:
    title -> set name), ours beside the paper's numbers (``layout["paper"]``: title -> psnr, ssim,
    psnr_verified, ssim_verified; unverified ones get a "?"). Writes ``table.md`` and ``table.png``
    (PSNR per column, ours and the paper's) and returns the Markdown."""
    ours = {row["set"]: row for row in set_results if row["protocol"] == protocol}
    columns: Mapping[str, str] = layout["columns"]
    paper: Mapping[str, Mapping[str, Any]] = layout.get("paper") or {}

    def paper_cell(title: str) -> str:
        cell = paper.get(title)
        if not cell:
            return MISSING
        psnr = f"{cell['psnr']:.2f}{'' if cell.get('psnr_verified') else '?'}"
        return f"{psnr} / {cell['ssim']:.3f}{'' if cell.get('ssim_verified') else '?'}"

    def our_cell(set_name: str) -> str:
        row = ours.get(set_name)
        return MISSING if row is None else f"{row['psnr']:.2f} / {row['ssim']:.4f}"

    bicubic = [f"{ours[name]['psnr_bicubic']:.2f}" if name in ours else MISSING for name in columns.values()]
    cells = [
        ("ours", *(our_cell(name) for name in columns.values())),
        ("bicubic", *bicubic),
        ("paper", *(paper_cell(title) for title in columns)),
    ]
    lines = [
        f"## {layout.get('title', 'results')}",
        "",
        markdown_table((None, *columns), cells, "l" + "r" * len(columns)),
        "",
        f'PSNR (dB) / SSIM under {protocol}; "?" marks a paper number not verified against the paper.',
    ]
    markdown = "\n".join(lines) + "\n"
    output_dir.mkdir(parents=True, exist_ok=True)
    write_text(output_dir / "table.md", markdown)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = list(columns)
    fig, ax = plt.subplots(figsize=(1.0 * len(titles) + 3.0, 3.6), dpi=120)
    for label, values, style in (
        ("ours", [ours[columns[t]]["psnr"] if columns[t] in ours else None for t in titles], "o-"),
        ("bicubic", [ours[columns[t]]["psnr_bicubic"] if columns[t] in ours else None for t in titles], "x:"),
        ("paper", [(paper.get(t) or {}).get("psnr") for t in titles], "s--"),
    ):
        points = [(i, v) for i, v in enumerate(values) if v is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, style, label=label)
    ax.set_xticks(range(len(titles)), titles)
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(str(layout.get("title", "")), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(output_dir / "table.png", fig)
    plt.close(fig)
    return markdown


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        write_csv(path, rows)
