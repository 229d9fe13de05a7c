"""The paper's tables: which experiment fills which row, and the paper's numbers beside it.

Paper numbers come from the paper. ``*_verified=False`` marks the numbers that could not be checked
against the paper's PDF (remembered values): they are shown with a "?" and never asserted.
Each row names the metric it compares: ``set`` is an evaluation-set name as the test DataModule
logs it (``test/<set>/psnr``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"


@dataclass(frozen=True)
class PaperValue:
    """A paper cell; ``*_verified`` is False for numbers recalled from the paper but not checked against
    its PDF (shown with a "?")."""

    psnr: float | None
    ssim: float | None
    psnr_verified: bool = False
    ssim_verified: bool = False


@dataclass(frozen=True)
class Row:
    """A paper row and the run that fills it.

    ``experiment`` names the training run (its ``conf/experiment/<name>.yaml``); several rows of several
    tables point at the same run rather than training the same model again. ``source`` says where the
    numbers come from: ``"train"`` (the run's own test phase, its ``run.json``) or ``"evaluate"``
    (``python -m ttsr_lightning.evaluate`` of that run's checkpoint, its ``results.json``).
    """

    label: str
    experiment: str
    columns: dict[str, str]  # column title -> evaluation-set name
    paper: dict[str, PaperValue] = field(default_factory=dict)  # column title -> paper value
    paper_params_m: float | None = None  # the paper's parameter count, in its unit of 2^20
    paper_params_verified: bool = False
    source: str = "train"


@dataclass(frozen=True)
class Table:
    """``command`` trains (or evaluates) what this table needs beyond the runs other tables share."""

    key: str
    title: str
    rows: tuple[Row, ...]
    command: str
    with_params: bool = False


CUFED5 = {"CUFED5": "CUFED5_stitched"}

TABLES: dict[str, Table] = {}


def _register(table: Table) -> None:
    TABLES[table.key] = table


_register(
    Table(
        key="table1_main",
        title=(
            "Table 1: PSNR/SSIM (Y) on CUFED5 (five references stitched, the paper's protocol, and searched "
            "natively as a list, all5), Sun80, Urban100, Manga109 (x4)"
        ),
        command="python -m ttsr_lightning --multirun +experiment=ttsr_rec,ttsr",
        rows=(
            Row(
                "TTSR-rec",
                "ttsr_rec",
                {
                    "CUFED5": "CUFED5_stitched",
                    "CUFED5 all5": "CUFED5_all5",
                    "Sun80": "Sun80",
                    "Urban100": "Urban100",
                    "Manga109": "Manga109",
                },
                {
                    "CUFED5": PaperValue(27.09, 0.804, psnr_verified=True),
                    "Sun80": PaperValue(30.02, 0.814),
                    "Urban100": PaperValue(25.87, 0.784),
                    "Manga109": PaperValue(30.09, 0.907),
                },
            ),
            Row(
                "TTSR",
                "ttsr",
                {
                    "CUFED5": "CUFED5_stitched",
                    "CUFED5 all5": "CUFED5_all5",
                    "Sun80": "Sun80",
                    "Urban100": "Urban100",
                    "Manga109": "Manga109",
                },
                {
                    "CUFED5": PaperValue(25.53, 0.765),
                    "Sun80": PaperValue(28.59, 0.774),
                    "Urban100": PaperValue(24.62, 0.747),
                    "Manga109": PaperValue(28.70, 0.886),
                },
            ),
        ),
    )
)

_register(
    Table(
        key="table2_texture_transformer",
        title="Table 2: texture-transformer ablation on CUFED5 (reconstruction loss, no CSFI)",
        command=(
            "python -m ttsr_lightning --multirun "
            "+experiment=ablation_base,ablation_ha,ablation_ha_sa,ablation_tt"
        ),
        with_params=True,
        rows=(
            Row("Base", "ablation_base", CUFED5, {"CUFED5": PaperValue(26.34, 0.780)}),
            Row("Base+HA", "ablation_ha", CUFED5, {"CUFED5": PaperValue(26.59, 0.786)}),
            Row("Base+HA+SA", "ablation_ha_sa", CUFED5, {"CUFED5": PaperValue(26.81, 0.795)}),
            Row("Base+HA+SA+LTE", "ablation_tt", CUFED5, {"CUFED5": PaperValue(26.92, 0.797)}),
        ),
    )
)

_register(
    Table(
        key="table3_csfi",
        title="Table 3: CSFI vs. a wider network on CUFED5 (reconstruction loss)",
        command=(
            "python -m ttsr_lightning --multirun +experiment=ablation_tt_c80,ablation_tt_c96 "
            "(with the ablation_tt run of Table 2 and the ttsr_rec run of Table 1, or "
            "+experiment=ablation_csfi: the same model)"
        ),
        with_params=True,
        rows=(
            # The parameter counts are as printed in the paper: this suite's generator counts (LTE
            # included) in units of 2^20 (tests/tools/test_params.py asserts all four).
            Row("Base+TT", "ablation_tt", CUFED5, {"CUFED5": PaperValue(26.92, 0.797)}, 4.42, True),
            Row("Base+TT+CSFI", "ttsr_rec", CUFED5, {"CUFED5": PaperValue(27.09, 0.804, True)}, 6.42, True),
            Row("Base+TT(C80)", "ablation_tt_c80", CUFED5, {"CUFED5": PaperValue(26.93, 0.797)}, 6.53, True),
            Row("Base+TT(C96)", "ablation_tt_c96", CUFED5, {"CUFED5": PaperValue(26.98, 0.799)}, 9.10, True),
        ),
    )
)

# Table 4's layout and paper numbers live with the evaluation that writes it (one copy).
_LEVELS = yaml.safe_load((CONFIG_DIR / "experiment" / "reference_levels.yaml").read_text())["table"]
_LEVEL_PAPER = {
    level: PaperValue(**_LEVELS["paper"].get(level, {"psnr": None, "ssim": None}))
    for level in _LEVELS["columns"]
}

_register(
    Table(
        key="table4_reference_similarity",
        title="Table 4: TTSR-rec on CUFED5 with references of decreasing similarity (L1..L5, LR)",
        command=(
            "python -m ttsr_lightning.evaluate +experiment=reference_levels "
            "ckpt=<ttsr_rec run>/checkpoints/last.ckpt (no training: the ttsr_rec run of Table 1)"
        ),
        rows=(
            Row(
                "TTSR-rec",
                "ttsr_rec",
                {level: f"CUFED5_{level}" for level in _LEVEL_PAPER},
                dict(_LEVEL_PAPER),
                source="evaluate",
            ),
        ),
    )
)

_register(
    Table(
        key="loss_ablation",
        title="Loss ablation on CUFED5 (the paper shows it qualitatively only: no paper numbers)",
        command=(
            "python -m ttsr_lightning --multirun +experiment=ablation_no_adv,ablation_no_tpl "
            "(with the ttsr and ttsr_rec runs of Table 1)"
        ),
        rows=(
            Row("all losses (TTSR)", "ttsr", CUFED5),
            Row("w/o adversarial", "ablation_no_adv", CUFED5),
            Row("w/o transferal perceptual", "ablation_no_tpl", CUFED5),
            Row("reconstruction only (TTSR-rec)", "ttsr_rec", CUFED5),
        ),
    )
)
