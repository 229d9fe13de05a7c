"""``debug=rehearse``: rehearse a run before launching it, the recipe exactly as configured, in minutes.

    python -m ttsr_lightning +experiment=ttsr debug=rehearse
    python -m ttsr_lightning +experiment=ttsr_rec trainer=gpu debug=rehearse

What a paper-scale run meets only after days (a test set that is missing, a continue command that does
not continue, a checkpoint that does not fit the disk) the rehearsal meets in minutes, on the same
config, machine and data:

1. the pre-flight (:mod:`ttsr_lightning.preflight`) of the whole recipe: every image decoded;
2. the recipe's run itself, started as a user would start it (``python -m ttsr_lightning`` with the same
   overrides), each epoch shortened to ``rehearsal.batches_per_epoch`` training batches: every warm-up
   epoch, then up to ``rehearsal.epochs_after_warmup`` epochs with every loss (the critic's steps
   included); a SIGTERM, sent to the run's process group as a scheduler would, stops it during its
   second-to-last batch;
3. the command that stopped run printed, run as printed: it must continue in the same run folder with
   the next batch, validate once (``rehearsal.validation_images`` per set), write its checkpoints and
   test the first ``rehearsal.test_batches`` images of every test set;
4. a report (printed, and written to ``<run>/rehearsal.md`` / ``rehearsal.json``): the time per training
   batch of each phase and per validation and test image, the predicted wall time of the full recipe on
   this machine, peak memory (host, and GPU where there is one), the size of one checkpoint and the disk
   the run will need.

The rehearsed run writes to ``outputs/rehearsals/<name>/<time>/`` (``conf/debug/rehearse.yaml``): its
checkpoints, panels, results and W&B run are those of a real run, made on one batch per epoch. Any step
that fails stops the rehearsal with one line naming it and the log that shows why (exit status 1).
"""

from __future__ import annotations

import math
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ttsr_lightning.callbacks.rehearsal_probe import WAITING_MARKER, read_probes
from ttsr_lightning.data.eval_sets import eval_set_name
from ttsr_lightning.errors import ConfigError, RehearsalFailed
from ttsr_lightning.files import write_json, write_text
from ttsr_lightning.markdown import markdown_table, number_cell
from ttsr_lightning.preflight import (
    Findings,
    best_checkpoints_kept,
    device_count,
    preflight_training,
    size_text,
    uses_gpu,
)
from ttsr_lightning.run_folder import program, run_overrides
from ttsr_lightning.settings import check_run_config, resolved_run_config

PREEMPTED_STATUS = 128 + signal.SIGTERM
CONTINUE_PREFIX = "continue it with: "
PROBE_FOLDER = "rehearsal"


@dataclass(frozen=True)
class RehearsalSettings:
    """The ``rehearsal`` config node (conf/debug/rehearse.yaml)."""

    batches_per_epoch: int = 1
    epochs_after_warmup: int = 3
    validation_images: int = 2
    test_batches: int = 1

    @classmethod
    def from_config(cls, node: Any) -> RehearsalSettings:
        values = dict(node)
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(
                f"rehearsal: unknown key(s) {unknown}; expected {sorted(cls.__dataclass_fields__)}"
            )
        for key, value in values.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"rehearsal.{key}: expected an integer >= 1, got {value!r}")
        return cls(**values)


@dataclass(frozen=True)
class RecipeShape:
    """What the full recipe runs: epochs, batches per epoch, validations, the sets' sizes."""

    warmup_epochs: int
    max_epochs: int
    batches_per_epoch: int
    validations: int
    processes: int
    validation_sets: dict[str, int]
    test_sets: dict[str, int]
    last_checkpoints: int

    @classmethod
    def from_config(cls, cfg: DictConfig, findings: Findings) -> RecipeShape:
        trainer, train = cfg.trainer, cfg.data.train
        processes = _processes(cfg)
        pairs = findings.set_sizes.get("CUFED train", 0)
        pairs -= round(float(train.get("val_fraction", 0.0)) * pairs)
        per_epoch = math.ceil(math.ceil(pairs / processes) / int(train.batch_size))
        limit = trainer.get("limit_train_batches")
        if isinstance(limit, float):
            per_epoch = math.ceil(limit * per_epoch)
        elif isinstance(limit, int):
            per_epoch = min(per_epoch, limit)
        max_epochs = int(trainer.max_epochs)
        every = trainer.get("check_val_every_n_epoch")
        validation_names = _set_names(train, "val_sets")
        every_n_batches = OmegaConf.select(cfg, "callbacks.resume_checkpoint.every_n_batches", default=None)
        periodic = (max_epochs * per_epoch) // int(every_n_batches) if every_n_batches else 0
        return cls(
            warmup_epochs=int(cfg.optim.get("warmup_epochs", 0)),
            max_epochs=max_epochs,
            batches_per_epoch=per_epoch,
            validations=max_epochs // int(every) if every and validation_names else 0,
            processes=processes,
            validation_sets={name: findings.set_sizes.get(name, 0) for name in validation_names},
            test_sets={name: findings.set_sizes.get(name, 0) for name in _set_names(cfg.data.test, "sets")}
            if cfg.test
            else {},
            last_checkpoints=max_epochs + periodic,
        )


def rehearse(cfg: DictConfig) -> dict[str, Any]:
    """Runs the rehearsal of the module docstring; returns its report (also written to the run folder)."""
    check_run_config(resolved_run_config(cfg))
    settings = RehearsalSettings.from_config(cfg.rehearsal)
    if not cfg.train:
        raise ConfigError("debug=rehearse rehearses a training: it needs train=true")
    if cfg.trainer.get("max_epochs") in (None, -1):
        raise ConfigError("debug=rehearse: trainer.max_epochs must be set, to predict the recipe's wall time")
    output_dir = Path(cfg.paths.output_dir)
    started = time.perf_counter()
    print(f"Rehearsal of `{shlex.join(_user_overrides())}` in {output_dir}", flush=True)
    print("1. pre-flight of the whole recipe (every image decoded)", flush=True)
    findings = preflight_training(cfg, output_dir)
    shape = RecipeShape.from_config(cfg, findings)
    probes = output_dir / PROBE_FOLDER
    warmup = shape.warmup_epochs
    # at least two epochs: one stopped by SIGTERM, one continued
    epochs = max(2, min(shape.max_epochs, warmup + settings.epochs_after_warmup))
    stop_batch = max(1, (epochs - 1) * settings.batches_per_epoch)
    overrides = [
        *_user_overrides(),
        f"trainer.max_epochs={epochs}",
        f"trainer.limit_train_batches={settings.batches_per_epoch}",
        f"trainer.check_val_every_n_epoch={epochs}",
        f"trainer.limit_val_batches={settings.validation_images}",
        f"trainer.limit_test_batches={settings.test_batches}",
        "preflight.decode_images=false",  # decoded above, seconds ago
        f"hydra.run.dir={output_dir}",
        "+callbacks.rehearsal_probe={_target_: ttsr_lightning.callbacks.RehearsalProbe, "
        f'folder: "{probes}", sigterm_before_batch: {stop_batch}}}',
    ]
    siblings = _folders(output_dir.parent)
    print(
        f"2. the run: {warmup} warm-up and {epochs - warmup} after-warm-up epoch(s) of "
        f"{settings.batches_per_epoch} batch(es); SIGTERM during batch {stop_batch}",
        flush=True,
    )
    first = _run_part([*program(), *overrides], output_dir / "rehearsal_part1.log", probes, sigterm=True)
    if first.returncode != PREEMPTED_STATUS:
        raise RehearsalFailed(
            f"the run ended with status {first.returncode} before or instead of its SIGTERM stop; see "
            f"{first.log}"
        )
    command = _continue_command(first.output)
    if command is None:
        raise RehearsalFailed(
            f"the run stopped by SIGTERM printed no command to continue it; see {first.log}"
        )
    print(f"3. the printed command, as printed: {command}", flush=True)
    second = _run_part(shlex.split(command), output_dir / "rehearsal_part2.log", probes, sigterm=False)
    if second.returncode != 0:
        raise RehearsalFailed(
            f"the printed continue command failed (status {second.returncode}); see {second.log}"
        )
    records = read_probes(probes)
    _check_continued(records, stop_batch, output_dir, siblings)
    report = _report(cfg, shape, findings, records, first, second, output_dir)
    report["rehearsal_seconds"] = time.perf_counter() - started
    markdown = render_report(report)
    write_json(output_dir / "rehearsal.json", report)  # in the order the report reads
    write_text(output_dir / "rehearsal.md", markdown)
    print(f"\n{markdown}\n(rehearsal.md / rehearsal.json in {output_dir})", flush=True)
    return report


# ----------------------------------------------------------------------------------------- running it
@dataclass
class _Part:
    returncode: int
    output: str
    log: Path
    launched_wall_time: float
    seconds: float


def _run_part(command: Sequence[str], log_path: Path, probes: Path, sigterm: bool) -> _Part:
    """Runs one part of the rehearsed run in its own process group (its ranks and loader workers), its
    output in ``log_path``; with ``sigterm``, sends SIGTERM to the group once the probe waits for it."""
    launched_wall, started = time.time(), time.perf_counter()
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            list(command), stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, text=True
        )
        try:
            _follow(process, probes, sigterm)
        finally:
            if process.poll() is None:  # interrupted (Ctrl-C): no process of the run outlives it
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    output = log_path.read_text(errors="replace")
    return _Part(process.returncode, output, log_path, launched_wall, time.perf_counter() - started)


def _follow(process: subprocess.Popen[str], probes: Path, sigterm: bool) -> None:
    """Waits for ``process``, printing each measured batch and image as the probe records it."""
    shown: dict[str, int] = {}
    marker = probes / WAITING_MARKER
    while process.poll() is None:
        time.sleep(0.2)
        _print_progress(probes, shown)
        if sigterm and marker.is_file():
            marker.unlink()
            print("   SIGTERM to the run's processes", flush=True)
            os.killpg(process.pid, signal.SIGTERM)
    _print_progress(probes, shown)


def _print_progress(probes: Path, shown: dict[str, int]) -> None:
    for record in read_probes(probes) if probes.is_dir() else []:
        key = str(record["pid"])
        lines = [
            f"   batch {row['run_batch']} (epoch {row['epoch']}, "
            f"{'warm-up' if row['warmup'] else 'after warm-up'}): {row['seconds']:.1f} s"
            for row in record["train"]
        ] + [
            f"   {stage} {row['set']}: {row['seconds']:.1f} s"
            for stage in ("validation", "test")
            for row in record[stage]
        ]
        for line in lines[shown.get(key, 0) :]:
            print(line, flush=True)
        shown[key] = len(lines)


def _continue_command(output: str) -> str | None:
    """The command the stopped run printed (the last ``continue it with:`` of its output)."""
    found = [
        line.split(CONTINUE_PREFIX, 1)[1].strip() for line in output.splitlines() if CONTINUE_PREFIX in line
    ]
    return found[-1] if found else None


def _check_continued(
    records: list[dict[str, Any]], stop_batch: int, output_dir: Path, siblings: set[Path]
) -> None:
    """The continued part started with the batch after the SIGTERM checkpoint, in the same folder."""
    if len(records) != 2 or not records[0]["train"] or not records[1]["train"]:
        raise RehearsalFailed(
            f"expected the probes of two parts in {output_dir / PROBE_FOLDER}, found {len(records)}"
        )
    last_first = records[0]["train"][-1]["run_batch"]
    first_second = records[1]["train"][0]["run_batch"]
    if last_first != stop_batch or first_second != stop_batch + 1:
        raise RehearsalFailed(
            f"the run stopped after batch {last_first} (SIGTERM during {stop_batch}) and the continued part "
            f"started with batch {first_second}; expected {stop_batch + 1}"
        )
    new = sorted(_folders(output_dir.parent) - siblings - {output_dir})
    if new:
        raise RehearsalFailed(f"the continued part wrote to another run folder: {', '.join(map(str, new))}")


def _folders(base: Path) -> set[Path]:
    return {path for path in base.iterdir() if path.is_dir()} if base.is_dir() else set()


def _user_overrides() -> list[str]:
    """This command's overrides, less the rehearsal's own (``debug=rehearse``, ``rehearsal.*``)."""
    return [
        override
        for override in run_overrides()
        if not re.match(r"^\+*(debug=|rehearsal\.|hydra\.run\.dir=|hydra\.output_subdir=)", override)
    ]


def _processes(cfg: DictConfig) -> int:
    trainer = cfg.trainer
    available = torch.cuda.device_count() if uses_gpu(trainer) else os.cpu_count() or 1
    return device_count(trainer.get("devices", 1), available) * int(trainer.get("num_nodes", 1) or 1)


def _set_names(module: DictConfig, key: str) -> list[str]:
    specs = module.get(key) or []
    return [eval_set_name(OmegaConf.to_container(spec, resolve=True)) for spec in specs]  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- the report
@dataclass(frozen=True)
class Timings:
    """What the rehearsal measured, in seconds: a training batch of each phase (the steady one where
    there was more than one, else the first), the wait for data at an epoch's start, an image of each
    validation and test set, a checkpoint write, and the start-up of a run."""

    warmup_batch: float
    after_warmup_batch: float
    epoch_start_wait: float
    validation_image: dict[str, float]
    test_image: dict[str, float]
    checkpoint_write: float
    startup: float


def batch_timings(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per phase (``warm-up``, ``after warm-up``): batches measured, the median of those after each part's
    first batch of the phase (None when there is none) and that first batch's seconds (the part's
    start, the critic's first use: one-time costs)."""
    phases: dict[str, list[tuple[bool, float]]] = {"warm-up": [], "after warm-up": []}
    for record in records:
        seen: set[str] = set()
        for row in record["train"]:
            phase = "warm-up" if row["warmup"] else "after warm-up"
            phases[phase].append((phase not in seen, row["seconds"]))
            seen.add(phase)
    timings = {}
    for phase, rows in phases.items():
        later = [seconds for first, seconds in rows if not first]
        timings[phase] = {
            "batches": len(rows),
            "steady_seconds": statistics.median(later) if later else None,
            "first_seconds": rows[0][1] if rows else None,
        }
    return timings


def predicted_seconds(shape: RecipeShape, timings: Timings) -> dict[str, float]:
    """The full recipe's wall time on this machine, part by part, from the rehearsal's measurements."""

    def images(per_image: dict[str, float], sizes: dict[str, int]) -> float:
        return sum(
            math.ceil(size / shape.processes) * per_image.get(name, 0.0) for name, size in sizes.items()
        )

    after_warmup = shape.max_epochs - shape.warmup_epochs
    return {
        "start-up (imports, pre-flight, models, data)": timings.startup,
        "training, warm-up": shape.warmup_epochs * shape.batches_per_epoch * timings.warmup_batch,
        "training, after warm-up": after_warmup * shape.batches_per_epoch * timings.after_warmup_batch,
        "waiting for data at epoch starts": shape.max_epochs * timings.epoch_start_wait,
        "validation": shape.validations * images(timings.validation_image, shape.validation_sets),
        "test": images(timings.test_image, shape.test_sets),
        "checkpoints": (shape.last_checkpoints + shape.validations) * timings.checkpoint_write,
    }


def _report(
    cfg: DictConfig,
    shape: RecipeShape,
    findings: Findings,
    records: list[dict[str, Any]],
    first: _Part,
    second: _Part,
    output_dir: Path,
) -> dict[str, Any]:
    batches = batch_timings(records)

    def batch_seconds(phase: str) -> float:
        return batches[phase]["steady_seconds"] or batches[phase]["first_seconds"] or 0.0

    waits = [
        row["waited_seconds"] for record in records for row in record["train"][1:] if row["waited_seconds"]
    ]
    checkpoint = output_dir / "checkpoints" / "last.ckpt"
    timings = Timings(
        warmup_batch=batch_seconds("warm-up"),
        after_warmup_batch=batch_seconds("after warm-up"),
        epoch_start_wait=statistics.median(waits) if waits else 0.0,
        validation_image=_per_set(records, "validation"),
        test_image=_per_set(records, "test"),
        checkpoint_write=_checkpoint_write_seconds(checkpoint),
        startup=records[0]["first_batch_wall_time"] - first.launched_wall_time + findings.decode_seconds,
    )
    parts = predicted_seconds(shape, timings)
    kept = 1 + best_checkpoints_kept(cfg) + 1
    checkpoint_bytes = checkpoint.stat().st_size
    return {
        "command": shlex.join([*program(), *_user_overrides()]),
        "run_folder": str(output_dir),
        "device": _device_name(cfg),
        "recipe": {
            "warmup_epochs": shape.warmup_epochs,
            "max_epochs": shape.max_epochs,
            "batches_per_epoch": shape.batches_per_epoch,
            "processes": shape.processes,
            "validations": shape.validations,
            "validation_sets": shape.validation_sets,
            "test_sets": shape.test_sets,
        },
        "batch_seconds": batches,
        "epoch_start_wait_seconds": timings.epoch_start_wait,
        "validation_image_seconds": timings.validation_image,
        "test_image_seconds": timings.test_image,
        "predicted_seconds": parts,
        "predicted_total_seconds": sum(parts.values()),
        "host_peak_bytes": max(record.get("host_peak_bytes", 0) for record in records),
        "gpu_peak_bytes": max((record.get("gpu_peak_bytes", 0) for record in records), default=0) or None,
        "checkpoint_bytes": checkpoint_bytes,
        "checkpoint_estimate_bytes": findings.checkpoint_bytes,
        "checkpoint_write_seconds": timings.checkpoint_write,
        "checkpoints_kept": kept,
        "disk_needed_bytes": kept * checkpoint_bytes,
        "disk_free_bytes": shutil.disk_usage(output_dir).free,
        "sigterm": {
            "status": first.returncode,
            "stopped_after_batch": records[0]["train"][-1]["run_batch"],
            "continued_with_batch": records[1]["train"][0]["run_batch"],
        },
        "parts_seconds": [first.seconds, second.seconds],
    }


def _per_set(records: list[dict[str, Any]], stage: str) -> dict[str, float]:
    """Median seconds per image of each set, over the rehearsed images."""
    by_set: dict[str, list[float]] = {}
    for record in records:
        for row in record[stage]:
            by_set.setdefault(row["set"], []).append(row["seconds"])
    return {name: statistics.median(values) for name, values in by_set.items()}


def _checkpoint_write_seconds(checkpoint: Path) -> float:
    """Seconds to write a file of the checkpoint's size into its folder, fsynced (as the run does)."""
    data = checkpoint.read_bytes()
    probe = checkpoint.with_name(".rehearsal_write_check")
    started = time.perf_counter()
    with open(probe, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    seconds = time.perf_counter() - started
    probe.unlink()
    return seconds


def _device_name(cfg: DictConfig) -> str:
    if uses_gpu(cfg.trainer) and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{_processes(cfg)}"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores) x{_processes(cfg)}"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:,.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def render_report(report: dict[str, Any]) -> str:
    """The rehearsal report as Markdown."""
    recipe, sigterm = report["recipe"], report["sigterm"]
    after_warmup = recipe["max_epochs"] - recipe["warmup_epochs"]
    measured: list[tuple[object, ...]] = [
        (
            f"training batch, {phase}",
            timing["batches"],
            number_cell(timing["steady_seconds"], ".2f"),
            f"{timing['first_seconds']:.2f}",
        )
        for phase, timing in report["batch_seconds"].items()
        if timing["batches"]
    ]
    measured += [
        (f"{stage} image, {name}", None, f"{seconds:.2f}", None)
        for stage in ("validation", "test")
        for name, seconds in report[f"{stage}_image_seconds"].items()
    ]
    lines = [
        f"# Rehearsal of `{report['command']}`",
        "",
        f"Passed on {report['device']} in {_duration(report['rehearsal_seconds'])}: the recipe as "
        "configured, each epoch shortened. SIGTERM stopped the run after batch "
        f"{sigterm['stopped_after_batch']} (status {sigterm['status']}); the printed command "
        f"continued it with batch {sigterm['continued_with_batch']}, in the same folder.",
        "",
        markdown_table(
            ("measured", "batches", "seconds each", "first one (one-time costs)"), measured, "lrrr"
        ),
    ]
    total = _duration(report["predicted_total_seconds"])
    memory = f"Peak memory: host {size_text(report['host_peak_bytes'])} (the largest process)"
    if report["gpu_peak_bytes"]:
        memory += f", GPU {size_text(report['gpu_peak_bytes'])} allocated"
    estimate = size_text(report["checkpoint_estimate_bytes"] or 0)
    lines += [
        "",
        f"**Predicted wall time of the full recipe on this machine: {total}** ({recipe['warmup_epochs']} "
        f"warm-up + {after_warmup} after-warm-up epochs of {recipe['batches_per_epoch']:,} batches on "
        f"{recipe['processes']} process(es), {recipe['validations']} validation(s)):",
        "",
        markdown_table(
            ("part", "predicted"),
            [(part, _duration(seconds)) for part, seconds in report["predicted_seconds"].items()],
            "lr",
        ),
        "",
        memory,
        "",
        f"Disk: one checkpoint {size_text(report['checkpoint_bytes'])} (pre-flight estimate {estimate}), "
        f"written in {report['checkpoint_write_seconds']:.2f} s; the run keeps up to "
        f"{report['checkpoints_kept']} (last, best, the one being written): "
        f"{size_text(report['disk_needed_bytes'])} of {size_text(report['disk_free_bytes'])} free.",
    ]
    return "\n".join(lines)
