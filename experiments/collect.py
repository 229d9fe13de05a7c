"""Collect finished runs into a paper table: Markdown, CSV and a PNG plot, ours beside the paper's.

    python experiments/collect.py table3_csfi outputs/multirun/<time> outputs/ttsr_rec --out results/

Every folder below the given ones that holds a ``run.json`` (written by ``train``) is a training run;
its ``trains`` is the model it trained (the experiment's name, or for an alias such as ``ablation_csfi``
the experiment it repeats, ``ttsr_rec``), and a row takes the newest run of its model. Every
``results.json`` written by ``python -m ttsr_lightning.evaluate`` is an evaluation of a run's
checkpoint (its provenance names the run and its model); table rows with ``source="evaluate"``
(Table 4) read those. Runs of a study at another scale (``+scale=miniature``, see miniature.py) are
left to that study. Runs on the embedded sample set are labelled
SMOKE: their numbers only show that the pipeline works. Parameter counts are measured on the models
the runs built and shown in the paper's unit, 2^20 parameters.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import TABLES, PaperValue, Table  # noqa: E402

from ttsr_lightning.files import save_figure, write_csv, write_text  # noqa: E402
from ttsr_lightning.markdown import markdown_table, number_cell  # noqa: E402

# The paper counts parameters in units of 2^20 ("M").
PARAMS_UNIT = 2**20


@dataclass
class Run:
    """A training run (``source="train"``) or an evaluation of a run's checkpoint (``"evaluate"``);
    ``name`` is the model it trained (``trains``), which table rows name as their ``experiment``."""

    path: Path
    name: str
    smoke: bool
    metrics: dict[str, float]
    params: dict[str, int]
    source: str = "train"
    protocol: str = "ttsr_official"


def find_runs(roots: list[Path]) -> list[Run]:
    """Every training run (``run.json``) and evaluation (``results.json`` of ``evaluate``) below ``roots``."""
    runs = []
    for root in roots:
        if not root.exists():
            raise FileNotFoundError(f"run folder {root} does not exist")
        for info_file in sorted(root.rglob("run.json")):
            info = json.loads(info_file.read_text())
            if info.get("study") is not None:
                continue  # a study at another scale reports itself (experiments/miniature.py)
            protocol = info.get("protocol", "ttsr_official")
            runs.append(
                Run(
                    info_file.parent,
                    info.get("trains") or info["name"],
                    bool(info["smoke"]),
                    info["metrics"],
                    info["params"],
                    protocol=protocol,
                )
            )
        for results_file in sorted(root.rglob("results.json")):
            results = json.loads(results_file.read_text())
            provenance = results.get("provenance", {})
            if provenance.get("kind") != "evaluate":
                continue  # a training run's own test results: its run.json has them
            primary = provenance["protocols"][0][
                "name"
            ]  # the unprefixed metrics, as a training run logs them
            metrics = {
                f"test/{row['set']}/{measure}": row[measure]
                for row in results["sets"]
                if row["protocol"] == primary
                for measure in ("psnr", "ssim", "psnr_bicubic", "ssim_bicubic", "lpips")
                if measure in row  # LPIPS: only where its weights were present
            }
            smoke = bool(provenance.get("smoke", False))
            runs.append(
                Run(
                    results_file.parent,
                    provenance.get("trains") or provenance["run"],
                    smoke,
                    metrics,
                    {},
                    source="evaluate",
                    protocol=primary,
                )
            )
    return runs


def _fmt(value: float | None, digits: int, verified: bool = True) -> str:
    return number_cell(value, f".{digits}f") + ("" if verified or value is None else "?")


def collect(table: Table, runs: list[Run]) -> tuple[list[dict[str, Any]], bool]:
    """One output row per table row: ours, the paper's and the difference, per column."""
    by_name: dict[tuple[str, str], Run] = {}
    for run in runs:  # the newest run of an experiment wins (run folders sort by time)
        by_name[(run.source, run.name)] = run
    rows, any_smoke = [], False
    for row in table.rows:
        run = by_name.get((row.source, row.experiment))
        out: dict[str, Any] = {
            "model": row.label,
            "experiment": row.experiment,
            "run": str(run.path) if run else "",
            "protocol": run.protocol if run else "",
        }
        any_smoke |= bool(run and run.smoke)
        if table.with_params:
            out["params_M"] = round(run.params["params/generator"] / PARAMS_UNIT, 3) if run else None
            out["paper_params_M"] = row.paper_params_m
            out["paper_params_verified"] = row.paper_params_verified
        for column, set_name in row.columns.items():
            paper = row.paper.get(column, PaperValue(None, None))
            for measure in ("psnr", "ssim"):
                ours = run.metrics.get(f"test/{set_name}/{measure}") if run else None
                theirs = getattr(paper, measure)
                out[f"{column} {measure}"] = ours
                out[f"{column} {measure} paper"] = theirs
                out[f"{column} {measure} paper verified"] = getattr(paper, f"{measure}_verified")
                out[f"{column} {measure} diff"] = None if ours is None or theirs is None else ours - theirs
            out[f"{column} psnr bicubic"] = run.metrics.get(f"test/{set_name}/psnr_bicubic") if run else None
            out[f"{column} lpips"] = run.metrics.get(f"test/{set_name}/lpips") if run else None
        rows.append(out)
    return rows, any_smoke


def to_markdown(table: Table, rows: list[dict[str, Any]], smoke: bool) -> str:
    columns = list(table.rows[0].columns)
    # LPIPS (ours only: the paper reports none) when some run measured it
    with_lpips = any(row[f"{column} lpips"] is not None for row in rows for column in columns)
    header = ["Model"] + (["Params (M = 2^20) ours / paper"] if table.with_params else [])
    for column in columns:
        header += [f"{column} ours", f"{column} paper", f"{column} Δ PSNR", f"{column} bicubic"]
        header += [f"{column} LPIPS ↓"] if with_lpips else []
    lines = [f"## {table.title}", ""]
    if smoke:
        lines += [
            "> **SMOKE RUN**: trained for a few steps on the embedded sample set; these numbers only show",
            "> that the pipeline runs end to end. They say nothing about the paper's claims.",
            "",
        ]
    body = []
    for row in rows:
        cells = [row["model"]]
        if table.with_params:
            paper_params = _fmt(row["paper_params_M"], 2, row["paper_params_verified"])
            cells.append(f"{_fmt(row['params_M'], 2)} / {paper_params}")
        for column in columns:
            cells.append(f"{_fmt(row[f'{column} psnr'], 2)} / {_fmt(row[f'{column} ssim'], 4)}")
            cells.append(
                f"{_fmt(row[f'{column} psnr paper'], 2, row[f'{column} psnr paper verified'])} / "
                f"{_fmt(row[f'{column} ssim paper'], 3, row[f'{column} ssim paper verified'])}"
            )
            cells.append(number_cell(row[f"{column} psnr diff"], "+.2f"))
            cells.append(_fmt(row[f"{column} psnr bicubic"], 2))
            if with_lpips:
                cells.append(_fmt(row[f"{column} lpips"], 4))
        body.append(cells)
    lines += [
        markdown_table(header, body),
        "",
        "PSNR (dB) / SSIM under the protocol of each run: "
        + ", ".join(sorted({row["protocol"] for row in rows if row["protocol"]}) or ["none collected"])
        + " (conf/protocol/; ttsr_official = the official TTSR evaluation: uint8, BT.601 Y, no crop)."
        + (" LPIPS: AlexNet v0.1 on the 8-bit RGB image, lower is better." if with_lpips else ""),
        'A "?" marks a paper number not verified against the paper itself.',
        f"Reproduce: `{table.command}`",
    ]
    return "\n".join(lines) + "\n"


def plot(table: Table, rows: list[dict[str, Any]], smoke: bool, path: Path) -> None:
    """Table 4: PSNR per reference level; tables with parameters: PSNR vs parameters; else bars."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    columns = list(table.rows[0].columns)
    if len(columns) > 1 and not table.with_params:  # one curve per row across the columns
        for row in rows:
            for suffix, style in (("", "o-"), (" paper", "s--")):
                values = [row[f"{c} psnr{suffix}"] for c in columns]
                points = [(i, v) for i, v in enumerate(values) if v is not None]
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, style, label=f"{row['model']}{' (paper)' if suffix else ' (ours)'}")
        ax.set_xticks(range(len(columns)), columns)
        ax.set_xlabel("reference / test set")
    elif table.with_params:
        column = columns[0]
        for row in rows:
            for params, psnr, marker, who in (
                (row["params_M"], row[f"{column} psnr"], "o", "ours"),
                (row["paper_params_M"], row[f"{column} psnr paper"], "s", "paper"),
            ):
                if params is not None and psnr is not None:
                    ax.scatter(params, psnr, marker=marker, label=f"{row['model']} ({who})")
                    ax.annotate(
                        row["model"], (params, psnr), fontsize=7, xytext=(3, 3), textcoords="offset points"
                    )
        ax.set_xlabel("parameters (M = 2^20)")
    else:
        column = columns[0]
        labels = [row["model"] for row in rows]
        ours = [row[f"{column} psnr"] or 0.0 for row in rows]
        ax.bar(range(len(rows)), ours, color="tab:blue")
        ax.set_xticks(range(len(rows)), labels, rotation=20, ha="right", fontsize=8)
        low = min((v for v in ours if v), default=0.0)
        ax.set_ylim(bottom=max(0.0, low - 1.0))
    ax.set_ylabel("PSNR (dB, Y)")
    title = ("SMOKE RUN (sample data) — " if smoke else "") + table.title
    ax.set_title("\n".join(textwrap.wrap(title, 80)), fontsize=8)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("runs", nargs="+", type=Path, help="run or sweep folders to search for run.json")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    args = parser.parse_args(argv)
    table = TABLES[args.table]
    rows, smoke = collect(table, find_runs(args.runs))
    missing = [row["experiment"] for row in rows if not row["run"]]
    stem = args.out / args.table
    markdown = to_markdown(table, rows, smoke)
    write_text(stem.with_suffix(".md"), markdown)
    write_csv(stem.with_suffix(".csv"), rows)
    plot(table, rows, smoke, stem.with_suffix(".png"))
    print(markdown)
    print(f"wrote {stem}.md, {stem}.csv, {stem}.png")
    if missing:
        print(f"missing runs for: {', '.join(missing)}", file=sys.stderr)


if __name__ == "__main__":
    main()
