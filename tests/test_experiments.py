"""Every paper experiment composes, runs a smoke-sized version on the sample set, and feeds its table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from helpers.config import SMOKE, compose_config
from ttsr_lightning.config_paths import CONFIG_DIR, REPO_ROOT
from ttsr_lightning.settings import OptimSettings, build_optimizer
from ttsr_lightning.train import train

sys.path.insert(0, str(REPO_ROOT / "experiments"))
from tables import TABLES  # noqa: E402


def _experiment_file(name: str) -> dict:
    return yaml.safe_load((CONFIG_DIR / "experiment" / f"{name}.yaml").read_text())


# Training experiments; an alias trains the model of another (`trains:`), an evaluation has `sets:`.
ALL_EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
ALIASES = {
    name: _experiment_file(name)["trains"] for name in ALL_EXPERIMENTS if "trains" in _experiment_file(name)
}
EVALUATIONS = sorted(name for name in ALL_EXPERIMENTS if "sets" in _experiment_file(name))
EXPERIMENTS = sorted(set(ALL_EXPERIMENTS) - set(ALIASES) - set(EVALUATIONS))


ARCHITECTURE = (
    "n_feats",
    "num_res_blocks",
    "use_hard_attention",
    "use_soft_attention",
    "learnable_extractor",
    "csfi",
)


# The loss row of each paper experiment as resolved from its config: term -> (weight, after_warmup).
# The paper's objective is rec 1, adv 1e-3, per 1e-2, tpl 1e-2 (the last three after the warm-up);
# TTSR-rec and the Table 2/3 ablations use the reconstruction loss only; the loss ablation drops one term.
FULL = {
    "reconstruction": (1.0, False),
    "adversarial": (0.001, True),
    "perceptual": (0.01, True),
    "transferal_perceptual": (0.01, True),
}
REC_ONLY = {
    **FULL,
    "adversarial": (0.0, True),
    "perceptual": (0.0, True),
    "transferal_perceptual": (0.0, True),
}
PAPER_LOSS_ROWS = {
    "ttsr": FULL,
    "ablation_no_adv": {**FULL, "adversarial": (0.0, True)},
    "ablation_no_tpl": {**FULL, "transferal_perceptual": (0.0, True)},
    **{
        name: REC_ONLY
        for name in (
            "ttsr_rec", "ablation_base", "ablation_ha", "ablation_ha_sa", "ablation_tt",
            "ablation_tt_c80", "ablation_tt_c96",
        )
    },
}  # fmt: skip


def loss_row(cfg: DictConfig) -> dict[str, tuple[float, bool]]:
    """The resolved ``loss.terms`` of ``cfg``: name -> (weight, after_warmup)."""
    return {
        name: (float(term.weight), bool(term.get("after_warmup", False)))
        for name, term in cfg.loss.terms.items()
    }


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_experiment_resolves_to_its_paper_loss_row(tmp_path: Path, experiment: str) -> None:
    cfg = compose_config(tmp_path, tmp_path / "data", [f"+experiment={experiment}"], tiny=False)
    assert loss_row(cfg) == PAPER_LOSS_ROWS[experiment]


def test_every_paper_row_points_at_an_experiment_and_each_model_is_trained_once() -> None:
    assert set(EXPERIMENTS) == {
        "ttsr", "ttsr_rec", "ablation_base", "ablation_ha", "ablation_ha_sa", "ablation_tt",
        "ablation_tt_c80", "ablation_tt_c96", "ablation_no_adv", "ablation_no_tpl",
    }  # fmt: skip
    used = {row.experiment for table in TABLES.values() for row in table.rows}
    assert used == set(EXPERIMENTS)  # every run feeds a table, every row has a run
    assert ALIASES == {"ablation_csfi": "ttsr_rec"}  # the design card's Table 3 row, the TTSR-rec model
    assert EVALUATIONS == ["reference_levels"]
    # Table 2's last row and Table 3's first row are one run; Table 3's CSFI row and Table 4 are TTSR-rec
    assert (
        TABLES["table2_texture_transformer"].rows[-1].experiment == TABLES["table3_csfi"].rows[0].experiment
    )
    assert {
        TABLES["table3_csfi"].rows[1].experiment,
        TABLES["table4_reference_similarity"].rows[0].experiment,
    } == {"ttsr_rec"}
    assert TABLES["table4_reference_similarity"].rows[0].source == "evaluate"
    # no two experiments train the same model with the same objective and schedule
    trained = {}
    for experiment in EXPERIMENTS:
        cfg = compose_config(Path("/tmp"), Path("/tmp/data"), [f"+experiment={experiment}"], tiny=False)
        key = (
            tuple(str(cfg.model.generator[name]) for name in ARCHITECTURE),
            tuple(loss_row(cfg).items()),
            cfg.optim.warmup_epochs,
            cfg.trainer.max_epochs,
        )
        assert key not in trained, f"{experiment} trains the model of {trained.get(key)}"
        trained[key] = experiment


def test_an_alias_trains_exactly_the_model_it_names(tmp_path: Path) -> None:
    for alias, model in ALIASES.items():
        content = _experiment_file(alias)
        assert content["defaults"] == [model, "_self_"] and set(content) == {
            "defaults",
            "name",
            "trains",
            "group",
        }
        aliased = compose_config(tmp_path, tmp_path / "data", [f"+experiment={alias}"], tiny=False)
        original = compose_config(tmp_path, tmp_path / "data", [f"+experiment={model}"], tiny=False)
        assert (aliased.name, aliased.trains) == (alias, model) and original.trains == model
        for group in ("model", "loss", "optim", "data", "trainer"):
            assert aliased[group] == original[group], group


def test_the_miniature_scale_is_the_default_runs_recipe(tmp_path: Path) -> None:
    """+scale=miniature gives every paper experiment the default run's model size, data and schedule."""
    default = compose_config(tmp_path, tmp_path / "data", [], tiny=False)
    for experiment in ("ablation_base", "ttsr_rec", "ttsr"):
        scaled = compose_config(
            tmp_path, tmp_path / "data", [f"+experiment={experiment}", "+scale=miniature"], tiny=False
        )
        assert scaled.study == "miniature" and scaled.name == experiment
        for key in ("n_feats", "num_res_blocks", "bicubic_residual", "vgg_weights"):
            assert scaled.model.generator[key] == default.model.generator[key], key
        assert scaled.data == default.data
        assert scaled.optim == default.optim
        for key in ("max_epochs", "check_val_every_n_epoch", "limit_train_batches"):
            assert scaled.trainer[key] == default.trainer[key], key
    ablation = compose_config(
        tmp_path, tmp_path / "data", ["+experiment=ablation_ha", "+scale=miniature"], tiny=False
    )
    assert (ablation.model.generator.csfi, ablation.model.generator.learnable_extractor) == (False, False)
    assert ablation.loss.terms.adversarial.weight == 0  # the experiment's own switches and objective stay


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_experiment_file_is_flat_states_every_switch_and_only_the_loss_weights_it_changes(
    experiment: str,
) -> None:
    content = yaml.safe_load((CONFIG_DIR / "experiment" / f"{experiment}.yaml").read_text())
    parents = [entry for entry in content["defaults"] if isinstance(entry, str) and entry != "_self_"]
    assert set(parents) <= {"ttsr", "ttsr_rec"}, parents
    assert set(ARCHITECTURE) <= set(content["model"]["generator"])
    # its loss is its base's (loss/default or loss/rec_only) less the terms it turns off
    for name, term in (content.get("loss") or {}).get("terms", {}).items():
        assert set(term) == {"weight"} and term["weight"] == 0, name
    assert set(content.get("loss") or {}) <= {"terms"}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_with_its_recipe(tmp_path: Path, experiment: str) -> None:
    cfg = compose_config(tmp_path, tmp_path / "data", [f"+experiment={experiment}"], tiny=False)
    assert cfg.name == experiment
    # W&B: the group is the table whose sweep trains the run, the tags every table with a row of it
    [sweep] = [table.key for table in TABLES.values() if _trains(table.command, experiment)]
    assert cfg.group == sweep
    fills = {
        table.key for table in TABLES.values() if any(row.experiment == experiment for row in table.rows)
    }
    assert set(cfg.tags) == fills
    generator = cfg.model.generator
    assert generator.vgg_weights == "imagenet"  # the paper recipes need the real VGG19
    assert list(generator.num_res_blocks) == [16, 16, 8, 4]
    expected_width = {"ablation_tt_c80": 80, "ablation_tt_c96": 96}.get(experiment, 64)
    assert generator.n_feats == expected_width
    assert cfg.data.train.batch_size == 9 and cfg.data.train.patch_size == 160
    if experiment.startswith("ablation_") and experiment not in ("ablation_no_adv", "ablation_no_tpl"):
        assert cfg.loss.terms.adversarial.weight == 0 and cfg.trainer.max_epochs == 200  # rec-loss models
    if experiment in ("ablation_base", "ablation_ha", "ablation_ha_sa", "ablation_tt"):
        assert generator.csfi is False


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_trains_and_validates_one_step(
    tmp_path: Path, sample_data_dir: Path, experiment: str
) -> None:
    cfg = compose_config(
        tmp_path, sample_data_dir, [f"+experiment={experiment}", *SMOKE, "test=false"], tiny=False
    )
    metrics = train(cfg)
    assert metrics["train/loss"] > 0 and metrics["val/CUFED5_L1/psnr"] > 0
    has_critic = experiment in ("ttsr", "ablation_no_tpl")
    assert ("critic/gradient_penalty" in metrics) == has_critic
    assert ("train/loss_transferal_perceptual" in metrics) == (experiment in ("ttsr", "ablation_no_adv"))


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory: pytest.TempPathFactory, sample_data_dir: Path) -> Path:
    """One smoke run per experiment, each in its own folder below the returned one, and the
    ``evaluate`` of the ttsr_rec run at every CUFED5 level (Table 4)."""
    root = tmp_path_factory.mktemp("smoke")
    for experiment in EXPERIMENTS:
        cfg = compose_config(
            root / experiment, sample_data_dir, [f"+experiment={experiment}", *SMOKE], tiny=False
        )
        train(cfg)
    ckpt = root / "ttsr_rec" / "run" / "checkpoints" / "last.ckpt"
    command = [
        sys.executable, "-m", "ttsr_lightning.evaluate", f"ckpt={ckpt}", "data=sample",
        f"paths.data_dir={sample_data_dir}", f"hydra.run.dir={root / 'evaluate_ttsr_rec'}", "logger=none",
        "trainer.accelerator=cpu", "trainer.limit_test_batches=1",
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    return root


@pytest.mark.slow
def test_every_experiment_runs_a_smoke_step(smoke_runs: Path) -> None:
    for experiment in EXPERIMENTS:
        summary = json.loads((smoke_runs / experiment / "run" / "run.json").read_text())
        assert summary["name"] == experiment and summary["smoke"] is True
        assert summary["metrics"]["test/CUFED5_stitched/psnr"] > 0
    base = json.loads((smoke_runs / "ablation_base" / "run" / "run.json").read_text())
    c96 = json.loads((smoke_runs / "ablation_tt_c96" / "run" / "run.json").read_text())
    assert base["params"]["params/lte_trainable"] == 0
    assert c96["params"]["params/generator"] > base["params"]["params/generator"]
    no_adv = json.loads((smoke_runs / "ablation_no_adv" / "run" / "run.json").read_text())
    assert no_adv["params"]["params/discriminator"] == 0 and "train/loss_adversarial" not in no_adv["metrics"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "table",
    [
        "table1_main",
        "table2_texture_transformer",
        "table3_csfi",
        "table4_reference_similarity",
        "loss_ablation",
    ],
)
def test_collect_builds_each_table_from_the_smoke_runs(smoke_runs: Path, tmp_path: Path, table: str) -> None:
    out = tmp_path / "results"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "experiments" / "collect.py"),
            table,
            str(smoke_runs),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    markdown = (out / f"{table}.md").read_text()
    assert "SMOKE RUN" in markdown and "SMOKE RUN" in result.stdout
    assert (out / f"{table}.csv").read_text().count("\n") >= 2
    assert (out / f"{table}.png").stat().st_size > 10_000
    if table == "table3_csfi":
        assert (
            "9.10 /" not in markdown.split("Base+TT(C96)")[1].split("|")[1]
        )  # ours, measured, not the paper's


def _trains(command: str, experiment: str) -> bool:
    """Whether a table's command trains ``experiment`` (``+experiment=a,b,...`` lists it)."""
    return any(
        experiment in word.removeprefix("+experiment=").split(",")
        for word in command.split()
        if word.startswith("+experiment=")
    )


@pytest.mark.parametrize("experiment", [*EXPERIMENTS, *ALIASES, None])
def test_every_recipe_optimises_with_the_papers_adam(tmp_path: Path, experiment: str | None) -> None:
    """The paper's Adam: generator 1e-4 with the LTE at 1e-5, betas (0.9, 0.999); critic 1e-4, betas
    (0, 0.9); a constant learning rate. The default run (None) at 5x the rates, as its config says."""
    overrides = [f"+experiment={experiment}"] if experiment else []
    cfg = compose_config(tmp_path, tmp_path / "data", overrides, tiny=False)
    settings = OptimSettings.from_dict(OmegaConf.to_container(cfg.optim, resolve=True))  # type: ignore[arg-type]
    stand_in = {name: [torch.nn.Parameter(torch.zeros(1))] for name in ("generator", "lte")}
    generator, schedule = build_optimizer("optim.generator", settings.generator, stand_in, {})
    critic, critic_schedule = build_optimizer(
        "optim.discriminator", settings.discriminator, {"": [torch.nn.Parameter(torch.zeros(1))]}, {}
    )
    scale = 1 if experiment else 5
    assert type(generator) is torch.optim.Adam and type(critic) is torch.optim.Adam
    options = [(g["name"], g["lr"], g["betas"], g["eps"], g["weight_decay"]) for g in generator.param_groups]
    assert options == [
        ("generator", pytest.approx(scale * 1e-4), (0.9, 0.999), 1e-8, 0),
        ("lte", pytest.approx(scale * 1e-5), (0.9, 0.999), 1e-8, 0),
    ]
    [critic_group] = critic.param_groups
    assert (critic_group["lr"], critic_group["betas"], critic_group["eps"]) == (1e-4, (0.0, 0.9), 1e-8)
    assert schedule is None and critic_schedule is None
