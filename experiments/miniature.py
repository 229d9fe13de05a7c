"""The paper's claims in miniature: its ablations retrained on the embedded sample set, on a CPU.

    python experiments/miniature.py                     # train the study (~45 min on 2 cores), then report
    python experiments/miniature.py --runs <folder>     # report on a study trained before

One Hydra sweep trains the paper's experiments (``+experiment=...``, unchanged) at a CPU scale
(``+scale=miniature``: the default run's small model, sample set and schedule, the same for every row)
for each seed; then this script writes, into ``--out``:

- ``miniature.md`` / ``.csv``: the study laid out as the paper's tables (Table 2: Base -> Base+TT,
  Table 3: + CSFI, Table 4: TTSR-rec with references of decreasing similarity, and TTSR with all
  losses beside TTSR-rec), the mean over seeds with the spread (min..max), the paper's numbers beside;
- ``miniature_per_seed.csv``: every row's value for every seed, with the commit and machine each run
  trained on (``experiments/results/`` keeps the study's; a slow test retrains one row against it);
- ``miniature.png``: the same as bars with the seeds' range;
- the paper's orderings, each marked "holds" (every seed), "holds on the mean" or "does not hold".

The sample set is a toy: six test images, a few minutes of training, a random VGG19 unless the
ImageNet weights are installed (README: weights). The absolute numbers say nothing about CUFED; the
orderings say whether the mechanisms the paper credits work at all, and a failing one is where to look.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import TABLES, PaperValue  # noqa: E402

from ttsr_lightning.files import save_figure, write_csv, write_json, write_text  # noqa: E402
from ttsr_lightning.markdown import MISSING, markdown_table, number_cell  # noqa: E402

STUDY = "miniature"
EXPERIMENTS = ("ablation_base", "ablation_ha", "ablation_ha_sa", "ablation_tt", "ttsr_rec", "ttsr")
SEEDS = (0, 1)
MEASURES = ("psnr", "ssim", "psnr_bicubic", "lpips")
# The measured set: the sample's CUFED5 with the most similar reference (it shares the HR's texture).
MAIN_SET = "CUFED5_L1"
LEVELS = ("L1", "L2", "L3", "L4", "L5", "LR")


@dataclass(frozen=True)
class StudyRow:
    section: str
    label: str
    experiment: str  # the model the row's runs train (run.json "trains")
    set_name: str
    paper: PaperValue


def _paper(table: str, label: str, column: str) -> PaperValue:
    row = next(row for row in TABLES[table].rows if row.label == label)
    return row.paper.get(column, PaperValue(None, None))


ROWS: tuple[StudyRow, ...] = (
    *(
        StudyRow(
            "Table 2", label, experiment, MAIN_SET, _paper("table2_texture_transformer", label, "CUFED5")
        )
        for label, experiment in (
            ("Base", "ablation_base"),
            ("Base+HA", "ablation_ha"),
            ("Base+HA+SA", "ablation_ha_sa"),
            ("Base+HA+SA+LTE", "ablation_tt"),
        )
    ),
    StudyRow("Table 3", "Base+TT", "ablation_tt", MAIN_SET, _paper("table3_csfi", "Base+TT", "CUFED5")),
    StudyRow(
        "Table 3", "Base+TT+CSFI", "ttsr_rec", MAIN_SET, _paper("table3_csfi", "Base+TT+CSFI", "CUFED5")
    ),
    *(
        StudyRow(
            "Table 4",
            f"TTSR-rec, {level}",
            "ttsr_rec",
            f"CUFED5_{level}",
            _paper("table4_reference_similarity", "TTSR-rec", level),
        )
        for level in LEVELS
    ),
    StudyRow(
        "Losses",
        "TTSR-rec (reconstruction only)",
        "ttsr_rec",
        MAIN_SET,
        _paper("table1_main", "TTSR-rec", "CUFED5"),
    ),
    StudyRow("Losses", "TTSR (all losses)", "ttsr", MAIN_SET, _paper("table1_main", "TTSR", "CUFED5")),
)

# (claim, the row that should be higher, the row that should be lower, measure). LPIPS: lower is better.
ORDERINGS: tuple[tuple[str, str, str, str], ...] = (
    ("Table 2: hard attention helps", "Base+HA", "Base", "psnr"),
    ("Table 2: soft attention helps", "Base+HA+SA", "Base+HA", "psnr"),
    ("Table 2: a learnable extractor helps", "Base+HA+SA+LTE", "Base+HA+SA", "psnr"),
    ("Table 2: texture transfer helps (Base+TT over Base)", "Base+HA+SA+LTE", "Base", "psnr"),
    ("Table 3: CSFI helps", "Base+TT+CSFI", "Base+TT", "psnr"),
    ("Table 4: L1 over L2", "TTSR-rec, L1", "TTSR-rec, L2", "psnr"),
    ("Table 4: L2 over L3", "TTSR-rec, L2", "TTSR-rec, L3", "psnr"),
    ("Table 4: L3 over L4", "TTSR-rec, L3", "TTSR-rec, L4", "psnr"),
    ("Table 4: L4 over LR as reference", "TTSR-rec, L4", "TTSR-rec, LR", "psnr"),
    ("Table 4: L1 over LR as reference", "TTSR-rec, L1", "TTSR-rec, LR", "psnr"),
    (
        "Losses: reconstruction only has the higher PSNR",
        "TTSR-rec (reconstruction only)",
        "TTSR (all losses)",
        "psnr",
    ),
    (
        "Losses: all losses have the better (lower) LPIPS",
        "TTSR (all losses)",
        "TTSR-rec (reconstruction only)",
        "lpips",
    ),
)


def sweep_command(seeds: tuple[int, ...], sweep_dir: Path, extra: list[str]) -> list[str]:
    """The Hydra sweep that trains the study: every experiment at the miniature scale, every seed."""
    return [
        sys.executable, "-m", "ttsr_lightning", "--multirun", f"+experiment={','.join(EXPERIMENTS)}",
        "+scale=miniature", f"seed={','.join(map(str, seeds))}",
        f"hydra.sweep.dir={sweep_dir}", *extra,
    ]  # fmt: skip


def load_runs(root: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """The study's runs below ``root``: model -> seed -> final test metrics, and the commit and machine
    the run trained on under ``git_commit`` and ``machine`` (the newest run per seed)."""
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for info_file in sorted(root.rglob("run.json")):  # folders sort by time: the newest wins
        info = json.loads(info_file.read_text())
        if info.get("study") != STUDY:
            continue
        metrics = {
            **info["metrics"],
            "git_commit": info.get("git_commit", "unknown"),
            "machine": info.get("machine", "unknown"),
        }
        runs.setdefault(info.get("trains", info["name"]), {})[int(info["seed"])] = metrics
    return runs


def per_seed_rows(runs: dict[str, dict[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every study row's measures for every seed, with the commit and machine its run trained on."""
    return [
        {
            "section": row.section,
            "model": row.label,
            "experiment": row.experiment,
            "set": row.set_name,
            "seed": seed,
            **{measure: metrics.get(f"test/{row.set_name}/{measure}") for measure in MEASURES},
            "git_commit": metrics["git_commit"],
            "machine": metrics["machine"],
        }
        for row in ROWS
        for seed, metrics in sorted(runs.get(row.experiment, {}).items())
    ]


def summarise(runs: dict[str, dict[int, dict[str, float]]]) -> list[dict[str, Any]]:
    """One line per study row: per measure the seeds' values, their mean, min and max."""
    lines = []
    for row in ROWS:
        seeds = runs.get(row.experiment, {})
        out: dict[str, Any] = {
            "section": row.section,
            "model": row.label,
            "experiment": row.experiment,
            "set": row.set_name,
            "seeds": sorted(seeds),
            "paper_psnr": row.paper.psnr,
            "paper_ssim": row.paper.ssim,
            "paper_psnr_verified": row.paper.psnr_verified,
        }
        for measure in MEASURES:
            values = [
                m[f"test/{row.set_name}/{measure}"]
                for m in seeds.values()
                if f"test/{row.set_name}/{measure}" in m
            ]
            out[measure] = statistics.fmean(values) if values else None
            out[f"{measure}_min"] = min(values) if values else None
            out[f"{measure}_max"] = max(values) if values else None
            out[f"{measure}_values"] = values
        lines.append(out)
    return lines


def check_orderings(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each ordering of ``ORDERINGS``: the mean difference and whether it holds for every seed."""
    by_model = {line["model"]: line for line in lines}
    checks = []
    for claim, better, worse, measure in ORDERINGS:
        high, low = by_model[better], by_model[worse]
        sign = -1.0 if measure == "lpips" else 1.0  # LPIPS: lower is better
        if high[measure] is None or low[measure] is None:
            checks.append({"claim": claim, "measure": measure, "difference": None, "verdict": "not measured"})
            continue
        difference = sign * (high[measure] - low[measure])
        pairs = list(zip(high[f"{measure}_values"], low[f"{measure}_values"], strict=False))
        every_seed = bool(pairs) and all(sign * (a - b) > 0 for a, b in pairs)
        verdict = (
            "holds (every seed)" if every_seed else "holds on the mean" if difference > 0 else "does not hold"
        )
        checks.append({"claim": claim, "measure": measure, "difference": difference, "verdict": verdict})
    return checks


def _cell(line: dict[str, Any], measure: str, digits: int) -> str:
    if line[measure] is None:
        return MISSING
    spread = line[f"{measure}_max"] - line[f"{measure}_min"]
    return f"{line[measure]:.{digits}f} ± {spread / 2:.{digits}f}"


def to_markdown(lines: list[dict[str, Any]], checks: list[dict[str, Any]], command: str) -> str:
    seeds = sorted({seed for line in lines for seed in line["seeds"]})
    results = []
    for line in lines:
        paper_psnr = number_cell(line["paper_psnr"], ".2f")
        if line["paper_psnr"] is not None and not line["paper_psnr_verified"]:
            paper_psnr += "?"
        results.append(
            (
                line["section"],
                line["model"],
                line["set"],
                _cell(line, "psnr", 2),
                _cell(line, "ssim", 4),
                _cell(line, "lpips", 4),
                number_cell(line["psnr_bicubic"], ".2f"),
                f"{paper_psnr} / {number_cell(line['paper_ssim'], '.3f')}",
            )
        )
    ordering = [
        (check["claim"], check["measure"], number_cell(check["difference"], "+.3f"), check["verdict"])
        for check in checks
    ]
    out = [
        "## The paper's claims in miniature (embedded sample set, small model, CPU)",
        "",
        f"Mean over seeds {seeds} ± half their range; PSNR (dB) / SSIM on the Y channel "
        "(ttsr_official protocol), LPIPS (AlexNet; lower is better) where its weights are installed. "
        "The paper's numbers (CUFED5, the full model, days of GPU training) are beside for the "
        'ordering only; "?" marks one the paper fact sheet could not verify.',
        "",
        markdown_table(
            ("section", "model", "set", "PSNR", "SSIM", "LPIPS", "bicubic PSNR", "paper PSNR / SSIM"),
            results,
            "lllrrrrr",
        ),
        "",
        markdown_table(
            ("the paper's ordering", "measure", "difference (mean)", "at this scale"), ordering, "llrl"
        ),
        "",
        f"Reproduce: `{command}`",
        "",
    ]
    return "\n".join(out)


def plot(lines: list[dict[str, Any]], path: Path) -> None:
    """PSNR bars per section with the seeds' range, bicubic as a dashed line."""
    sections = list(dict.fromkeys(line["section"] for line in lines))
    fig, axes = plt.subplots(1, len(sections), figsize=(3.4 * len(sections), 3.8), dpi=120)
    for ax, section in zip(axes, sections, strict=True):
        rows = [line for line in lines if line["section"] == section]
        means = [line["psnr"] or 0.0 for line in rows]
        errors = [
            [(line["psnr"] or 0.0) - (line["psnr_min"] or 0.0) for line in rows],
            [(line["psnr_max"] or 0.0) - (line["psnr"] or 0.0) for line in rows],
        ]
        ax.bar(range(len(rows)), means, yerr=errors, capsize=3, color="tab:blue")
        bicubic = [line["psnr_bicubic"] for line in rows if line["psnr_bicubic"] is not None]
        if bicubic:
            ax.axhline(statistics.fmean(bicubic), color="grey", linestyle="--", label="bicubic")
            ax.legend(fontsize=7)
        labels = [line["model"].replace("TTSR-rec, ", "") for line in rows]
        ax.set_xticks(
            range(len(rows)),
            ["\n".join(textwrap.wrap(label.replace("+", "+ "), 12)) for label in labels],
            fontsize=7,
        )
        values = [v for v in means if v] + bicubic
        if values:
            ax.set_ylim(min(values) - 0.5, max(values) + 0.3)
        ax.set_title(section, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("PSNR (dB, Y), mean and range over seeds")
    fig.suptitle("TTSR's claims in miniature (sample set, small model, CPU)", fontsize=9)
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)


def report(runs_root: Path, out: Path, command: str) -> str:
    runs = load_runs(runs_root)
    lines = summarise(runs)
    checks = check_orderings(lines)
    markdown = to_markdown(lines, checks, command)
    write_text(out / "miniature.md", markdown)
    # the per-seed values stay out of the CSV: its cells hold the mean and the range
    write_csv(
        out / "miniature.csv",
        [{k: v for k, v in line.items() if not k.endswith("_values")} for line in lines],
    )
    write_csv(out / "miniature_per_seed.csv", per_seed_rows(runs))
    write_json(out / "orderings.json", checks)
    plot(lines, out / "miniature.png")
    return markdown


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/miniature"), help="the study's folder")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="comma-separated seeds")
    parser.add_argument("--runs", type=Path, help="report on the runs below this folder; train nothing")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run of the sweep")
    args = parser.parse_args(argv)
    seeds = tuple(int(seed) for seed in args.seeds.split(","))
    runs_root = args.runs or args.out / "runs"
    command = sweep_command(seeds, runs_root, args.overrides)
    shown = " ".join(["python", *command[1:]])
    if args.runs is None:
        print(f"training the study: {shown}", flush=True)
        environment = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}
        subprocess.run(command, check=True, env=environment)
    print(report(runs_root, args.out, shown))
    print(
        f"wrote {args.out}/miniature.md, miniature.csv, miniature_per_seed.csv, miniature.png, orderings.json"
    )


if __name__ == "__main__":
    main()
