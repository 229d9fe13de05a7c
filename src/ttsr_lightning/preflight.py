"""Pre-flight: everything a run will touch, checked before its first training step, every problem at once.

A training run (:func:`preflight_training`) and an evaluation (:func:`preflight_evaluation`) check, before
any model is trained or any image evaluated:

- **data**: the layout and counts of the training, validation and test sets (each built by the
  DataModule's own dataset classes) and that every image they will read decodes at a usable size
  (``preflight.decode_images``); a released dataset with another count gets a note, not an error, so
  a subset or a dataset of one's own works;
- **weights** the config asks for: the ImageNet VGG19 wherever ``vgg_weights`` is ``imagenet`` or a
  path (the generator's LTE, the perceptual loss), the AlexNet of ``lpips=true`` or a path;
- **the run folder**: writable, with free disk for the checkpoints the run keeps (``last.ckpt``, the
  best ones and the one being written), estimated from the model's parameter counts (the generator
  and the critic built on the meta device: no memory, no weights read) and the optimiser state;
- **the machine**: ``trainer.devices`` fits its GPUs (or, on the CPU, its cores: each device is a
  training process) and every loader's ``num_workers`` fits its cores;
- **speed paths** the config turns on: ``system.compile`` compiles and runs one small step, with the
  configured mode, on the run's device.

Every problem is one line naming the config key the user typed (a key that takes its value from another,
``model.discriminator.in_size: ${data.train.patch_size}``, is reported under that other key), and they
come together as one :class:`PreflightError` (exit status 2) before any checkpoint is written. What
the checks found (set sizes, the estimate) is logged and returned as :class:`Findings`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from ttsr_lightning.checkpoints.torch_file import KINDS_EXPECTED
from ttsr_lightning.data.errors import DatasetLayoutError
from ttsr_lightning.data.inspection import (
    ImageRequirement,
    available_cores,
    decode_problems,
    image_requirements,
    subset_note,
)
from ttsr_lightning.errors import ConfigError, PreflightError
from ttsr_lightning.files import atomic_write
from ttsr_lightning.lpips_setting import load_lpips
from ttsr_lightning.models.patch_search import RelevanceKernelFallback, search
from ttsr_lightning.pretrained import VGG19, find_weights_file

log = logging.getLogger(__name__)

# Adam keeps two moments per trainable parameter; fp32 everywhere (a checkpoint holds fp32 weights)
_ADAM_MOMENTS = 2
_BYTES_PER_VALUE = 4
# what a checkpoint holds besides weights and moments (hyper-parameters, loop and RNG states), at most
_CHECKPOINT_OVERHEAD = 1 << 20


@dataclass
class Findings:
    """What the pre-flight found: ``problems`` (the run cannot work), ``notes`` (it works, but read
    this), what it checked (``checked``, one line each), and the estimated size of one checkpoint and
    the disk the run keeps for them."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    checkpoint_bytes: int | None = None
    checkpoint_disk_bytes: int | None = None
    set_sizes: dict[str, int] = field(default_factory=dict)
    decode_seconds: float = 0.0

    _keys: set[str] = field(default_factory=set)

    def problem(self, line: str, key: str | None = None) -> None:
        """Adds ``line`` (once); with ``key``, only the first problem of that config key."""
        if line in self.problems or (key is not None and key in self._keys):
            return
        if key is not None:
            self._keys.add(key)
        self.problems.append(line)

    def raise_problems(self) -> None:
        for note in self.notes:
            log.warning("pre-flight: %s", note)
        for line in self.checked:
            log.info("pre-flight: %s", line)
        if self.problems:
            raise PreflightError(self.problems)


def preflight_training(cfg: DictConfig, output_dir: Path) -> Findings:
    """Checks a training run's config (the module docstring); raises PreflightError listing every
    problem, else returns what it found."""
    findings = Findings()
    settings = cfg.get("preflight") or {}
    started = time.perf_counter()
    _check_machine(cfg, findings)
    _check_weights(cfg, findings)
    _check_models(cfg, findings)
    sets = _dataset_builders(cfg, "data.train", findings) if cfg.train else []
    if cfg.test:
        sets += _dataset_builders(cfg, "data.test", findings)
    _check_data(sets, findings, bool(settings.get("decode_images", True)), cfg.data.get("name") == "sample")
    _check_output(output_dir, findings)
    if cfg.train:
        _check_compile(cfg, findings)
    _check_relevance_kernel(cfg, findings)
    findings.checked.append(f"done in {time.perf_counter() - started:.1f} s")
    findings.raise_problems()
    return findings


def preflight_evaluation(cfg: DictConfig, sets: list[dict[str, Any]], output_dir: Path) -> Findings:
    """Checks an evaluation: the checkpoint file is there, the chosen test sets (``sets``: specs of
    ``data.test.sets``), LPIPS weights, the machine and the output folder; raises PreflightError listing
    every problem."""
    findings = Findings()
    settings = cfg.get("preflight") or {}
    if cfg.get("ckpt") is not None and not Path(str(cfg.ckpt)).is_file():
        findings.problem(f"ckpt={cfg.ckpt}: no file there; expected {KINDS_EXPECTED}")
    _check_machine(cfg, findings, loader_keys=("data.test",))
    _check_lpips("lpips", cfg.get("lpips", False), findings)
    builders = _dataset_builders(cfg, "data.test", findings, sets=sets)
    _check_data(
        builders, findings, bool(settings.get("decode_images", True)), cfg.data.get("name") == "sample"
    )
    _check_output(output_dir, findings)
    findings.raise_problems()
    return findings


# ----------------------------------------------------------------------------------------- config keys
def typed_key(cfg: DictConfig, key: str) -> str:
    """The key the user sets for ``key``: ``key`` itself, or the key its value is interpolated from
    (followed through chains: ``model.discriminator.in_size`` -> ``data.train.patch_size``)."""
    for _ in range(10):
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if not isinstance(parent, DictConfig) or leaf not in parent:
            return key
        node = parent._get_node(leaf)
        value = node._value() if node is not None else None
        if not (isinstance(value, str) and value.startswith("${") and value.endswith("}")):
            return key
        source = value[2:-1]
        if ":" in source or "${" in source:  # a resolver or a composed string: not one key
            return key
        key = source
    return key


def _constructor_problem(cfg: DictConfig, group: str, exc: BaseException, findings: Findings) -> None:
    """A constructor's refusal of config ``group``, as one problem under the key the user typed: the
    message's first word names an argument (``in_size must be ...``) or a full key (``data.train.x ...``);
    an argument whose value comes from another key is reported under that key."""
    cause = exc.__cause__ if isinstance(exc, InstantiationException) and exc.__cause__ else exc
    message = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    first = message.split(" ", 1)[0].rstrip(":")
    key = first if first.startswith(f"{group}.") else f"{group}.{first}"
    node = OmegaConf.select(cfg, group)
    if not (isinstance(node, DictConfig) and key.removeprefix(f"{group}.") in node):
        findings.problem(f"{group}: {message}")
        return
    source = typed_key(cfg, key)
    if source != key:
        value = OmegaConf.select(cfg, source, throw_on_resolution_failure=False)
        findings.problem(f"{source}={value} ({key}): {message}", key=source)
    elif first == key:
        findings.problem(message, key=key)
    else:
        findings.problem(f"{key}: {message}", key=key)


# ----------------------------------------------------------------------------------------- the machine
def device_count(devices: Any, available: int) -> int:
    """How many devices ``trainer.devices`` asks for (``-1`` / ``"auto"``: all available)."""
    if isinstance(devices, list | ListConfig):
        return len(devices)
    if isinstance(devices, str):
        if devices in ("auto", "-1"):
            return available
        if "," in devices:
            return len([part for part in devices.split(",") if part.strip()])
        return int(devices) if devices.strip().isdigit() else 1
    if isinstance(devices, int) and not isinstance(devices, bool):
        return available if devices == -1 else devices
    return 1


def uses_gpu(trainer: Mapping[str, Any]) -> bool:
    """Whether ``trainer.accelerator`` puts the run on CUDA GPUs on this machine."""
    accelerator = str(trainer.get("accelerator", "auto"))
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def _check_machine(
    cfg: DictConfig, findings: Findings, loader_keys: tuple[str, ...] = ("data.train", "data.test")
) -> None:
    trainer = cfg.get("trainer") or {}
    cores = available_cores()
    devices = trainer.get("devices", 1)
    if uses_gpu(trainer):
        gpus = torch.cuda.device_count()
        wanted = device_count(devices, gpus)
        if gpus == 0:
            findings.problem(
                f"trainer.accelerator={trainer.get('accelerator')}: this machine has no CUDA GPU "
                "(trainer=cpu runs on the CPU)"
            )
        elif wanted > gpus:
            findings.problem(f"trainer.devices={devices}: asks for {wanted} GPUs; this machine has {gpus}")
        findings.checked.append(f"machine: {gpus} GPU(s), {cores} CPU cores; trainer.devices={devices}")
    else:
        wanted = device_count(devices, cores)
        if wanted > cores:
            findings.problem(
                f"trainer.devices={devices}: {wanted} training processes on the CPU, each with its own copy "
                f"of the model and data; this machine has {cores} CPU cores (at most {cores})"
            )
        findings.checked.append(f"machine: CPU, {cores} cores; trainer.devices={devices}")
    for key in loader_keys:
        node = OmegaConf.select(cfg, key)
        workers = node.get("num_workers") if isinstance(node, DictConfig) else None
        if isinstance(workers, int) and workers > cores:
            findings.problem(
                f"{key}.num_workers={workers}: more loader processes than this machine's {cores} CPU cores"
            )


# ----------------------------------------------------------------------------------------- weights
def _vgg_settings(cfg: DictConfig) -> dict[str, str]:
    """``vgg_weights`` key -> value, for the generator and every enabled loss term that has one."""
    found: dict[str, str] = {}
    generator = OmegaConf.select(cfg, "model.generator")
    if isinstance(generator, DictConfig) and generator.get("vgg_weights") is not None:
        found["model.generator.vgg_weights"] = str(generator.vgg_weights)
    terms = OmegaConf.select(cfg, "loss.terms") or {}
    for name, term in terms.items():
        if isinstance(term, DictConfig) and float(term.get("weight", 0)) > 0 and term.get("vgg_weights"):
            found[f"loss.terms.{name}.vgg_weights"] = str(term.vgg_weights)
    return found


def _check_weights(cfg: DictConfig, findings: Findings) -> None:
    checked: set[str] = set()
    for key, value in _vgg_settings(cfg).items():
        source = typed_key(cfg, key)
        if value == "random" or value in checked:
            continue
        checked.add(value)
        try:
            path = find_weights_file(
                VGG19, None if value in ("imagenet", "auto") else value, download=value == "imagenet"
            )
        except (OSError, ValueError, RuntimeError) as exc:
            findings.problem(f"{source}={value}: {exc}")
            continue
        if path is None:  # auto, absent
            findings.notes.append(f"{source}=auto: no ImageNet VGG19 here; the VGG19 starts RANDOM")
        else:
            findings.checked.append(f"{source}: {path}")
    _check_lpips("system.lpips", OmegaConf.select(cfg, "system.lpips", default=False), findings)


def _check_lpips(key: str, setting: Any, findings: Findings) -> None:
    """``lpips=true`` or a path must load now; ``auto`` is skipped with a warning by the run itself."""
    if setting in (False, "auto", "false", None):
        return
    try:
        load_lpips(setting)
    except ConfigError as exc:
        findings.problem(f"{key}: {exc}".replace(f"{key}: lpips=", f"{key}="))


# ----------------------------------------------------------------------------------------- models
def _check_models(cfg: DictConfig, findings: Findings) -> None:
    """Builds the generator and the critic on the meta device (their constructors' checks; no memory,
    no weights read) and estimates the checkpoint from their sizes."""
    counts: dict[str, tuple[int, int]] = {}
    for group, needed in (("model.generator", True), ("model.discriminator", _critic_on(cfg))):
        node = OmegaConf.select(cfg, group)
        if not needed or not isinstance(node, DictConfig):
            continue
        config = OmegaConf.to_container(node, resolve=True)
        assert isinstance(config, dict)
        if "vgg_weights" in config:
            config["vgg_weights"] = "random"  # weights are checked apart; meta tensors hold none
        try:
            with torch.device("meta"):
                module = instantiate(config)
        except Exception as exc:  # a constructor's refusal: reported under the key the user typed
            _constructor_problem(cfg, group, exc, findings)
            continue
        parameters = list(module.parameters())
        total = sum(p.numel() for p in parameters) + sum(b.numel() for b in module.buffers())
        trainable = sum(p.numel() for p in parameters if p.requires_grad)
        counts[group] = (total, trainable)
    if "model.generator" not in counts:
        return
    values = sum(total + _ADAM_MOMENTS * trainable for total, trainable in counts.values())
    findings.checkpoint_bytes = values * _BYTES_PER_VALUE + _CHECKPOINT_OVERHEAD
    kept = 1 + best_checkpoints_kept(cfg) + 1  # last.ckpt, the best ones, the one being written
    findings.checkpoint_disk_bytes = kept * findings.checkpoint_bytes
    findings.checked.append(
        f"checkpoint: ~{size_text(findings.checkpoint_bytes)} each (weights and Adam moments of "
        + ", ".join(f"{group} ({total:,} values)" for group, (total, _) in counts.items())
        + f"); the run keeps up to {kept}: {size_text(findings.checkpoint_disk_bytes)}"
    )


def _critic_on(cfg: DictConfig) -> bool:
    terms = OmegaConf.select(cfg, "loss.terms") or {}
    return any(
        "WGANGP" in str(term.get("_target_", "")) and float(term.get("weight", 0)) > 0
        for term in terms.values()
        if isinstance(term, DictConfig)
    )


def best_checkpoints_kept(cfg: DictConfig) -> int:
    """How many best-score checkpoints the ModelCheckpoint callbacks keep (``save_top_k``)."""
    kept = 0
    for callback in (cfg.get("callbacks") or {}).values():
        if isinstance(callback, DictConfig) and str(callback.get("_target_", "")).endswith("ModelCheckpoint"):
            top_k = callback.get("save_top_k", 1)
            kept += max(int(top_k), 0) if int(top_k) != -1 else int(cfg.trainer.get("max_epochs") or 1)
    return kept


def size_text(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


# ----------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class _SetBuilder:
    key: str
    name: str
    build: Callable[[], Any]


def _dataset_builders(cfg: DictConfig, key: str, findings: Findings, **arguments: Any) -> list[_SetBuilder]:
    """The datasets of the DataModule config at ``key``, to be built one by one (each with its own
    problems); ``arguments`` replace config values (evaluate's chosen sets)."""
    data = OmegaConf.select(cfg, key)
    if not isinstance(data, DictConfig):
        return []
    try:
        module = instantiate(data, **arguments)
    except Exception as exc:
        _constructor_problem(cfg, key, exc, findings)
        return []
    listing = getattr(module, "dataset_builders", None)
    if listing is None:
        findings.notes.append(
            f"{key}: {type(module).__name__} lists no datasets; its files are read unchecked"
        )
        return []
    try:
        module.prepare_data()  # the embedded sample set is built here, as the run would
    except DatasetLayoutError as exc:
        findings.problem(f"{key}: {exc}".replace("\n ", ""))
        return []
    return [_SetBuilder(f"{key}.{where}", name, build) for where, name, build in listing()]


def _check_data(sets: list[_SetBuilder], findings: Findings, decode: bool, is_sample: bool) -> None:
    """Builds every set (layout, counts), then decodes every file they read, each file once."""
    by_problem: dict[str, list[str]] = {}
    requirements: list[ImageRequirement] = []
    found: dict[str, list[str]] = {}  # DataModule (train, test) -> "<set> <count> <unit>"
    for entry in sets:
        try:
            dataset = entry.build()
        except DatasetLayoutError as exc:
            for line in exc.problems:
                by_problem.setdefault(f"{exc.dataset}: {line}", []).append(f"{entry.key} ({entry.name})")
            continue
        except (ValueError, TypeError, ConfigError) as exc:
            by_problem.setdefault(str(exc), []).append(f"{entry.key} ({entry.name})")
            continue
        unit = "pairs" if entry.name == "CUFED train" else "groups" if "CUFED5" in entry.name else "images"
        findings.set_sizes[entry.name] = len(dataset)
        found.setdefault(entry.key.split(".")[1], []).append(f"{entry.name} {len(dataset):,} {unit}")
        note = None if is_sample else subset_note(getattr(dataset, "dataset", "CUFED"), len(dataset), unit)
        if note and note not in findings.notes:
            findings.notes.append(note)
        requirements += image_requirements(dataset)
    for problem, where in by_problem.items():
        findings.problem(f"{', '.join(where)}: {problem}")
    for module, sizes in found.items():
        findings.checked.append(f"data.{module}: {', '.join(sizes)}")
    if decode and requirements:
        started = time.perf_counter()
        problems = decode_problems(requirements, "the run's images")
        for line in problems:
            findings.problem(line)
        findings.decode_seconds = time.perf_counter() - started
        count = len({requirement.path for requirement in requirements})
        findings.checked.append(f"{count:,} image files decoded in {findings.decode_seconds:.1f} s")


# ----------------------------------------------------------------------------------------- run folder
def _check_output(output_dir: Path, findings: Findings) -> None:
    probe = output_dir / ".preflight_write_check"
    try:
        atomic_write(probe, lambda file: file.write(b"ok"))
        probe.unlink()
    except OSError as exc:
        findings.problem(f"hydra.run.dir={output_dir}: cannot write there ({exc.strerror or exc})")
        return
    free = shutil.disk_usage(output_dir).free
    needed = findings.checkpoint_disk_bytes
    if needed is not None and needed > free:
        findings.problem(
            f"hydra.run.dir={output_dir}: {size_text(free)} free; the run's checkpoints need "
            f"~{size_text(needed)} (paths.log_dir=... writes elsewhere)"
        )
    findings.checked.append(f"run folder {output_dir}: writable, {size_text(free)} free")


# ----------------------------------------------------------------------------------------- speed paths
def _check_compile(cfg: DictConfig, findings: Findings) -> None:
    """``system.compile``: compile and run one small convolution step with the configured mode on the
    run's device, so a broken compiler fails here in seconds, not after the data is loaded."""
    system = cfg.get("system") or {}
    if not system.get("compile"):
        return
    mode = system.get("compile_mode", "default")
    device = torch.device("cuda" if uses_gpu(cfg.trainer) and torch.cuda.is_available() else "cpu")
    try:
        compile_step_check(device, None if mode == "default" else str(mode))
    except Exception as exc:
        findings.problem(
            f"system.compile=true (compile_mode={mode}): one compiled step on {device.type} failed: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        )
        return
    findings.checked.append(f"system.compile: one compiled step ran on {device.type} (mode {mode})")


def _check_relevance_kernel(cfg: DictConfig, findings: Findings) -> None:
    """``model.generator.relevance_kernel=triton`` on a GPU: one search of a small problem by the kernel,
    against the torch passes. A kernel that fails is a note (the run falls back to the torch passes, the
    same results); one whose results differ is a problem."""
    if OmegaConf.select(cfg, "model.generator.relevance_kernel", default="torch") != "triton":
        return
    if not (uses_gpu(cfg.trainer) and torch.cuda.is_available()):
        findings.notes.append("model.generator.relevance_kernel=triton: not on a GPU, the torch passes run")
        return
    outcome = relevance_kernel_check(torch.device("cuda"))
    if outcome is None:
        findings.checked.append("model.generator.relevance_kernel=triton: the kernel equals the torch passes")
    elif outcome.startswith("differs"):
        findings.problem(f"model.generator.relevance_kernel=triton: the Triton kernel {outcome}")
    else:
        findings.notes.append(f"model.generator.relevance_kernel=triton: {outcome}; the torch passes run")


def relevance_kernel_check(device: torch.device) -> str | None:
    """One relevance search of a small random problem on ``device`` by the Triton kernel and by the torch
    passes: None when they agree, else what went wrong (the kernel failed, or its results differ)."""
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(1, 16, 12, 10, generator=generator).to(device)
    key = torch.randn(1, 16, 20, 18, generator=generator).to(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RelevanceKernelFallback)
        relevance, index = search(query, [key], relevance_kernel="triton")
    fallback = [
        str(warning.message) for warning in caught if issubclass(warning.category, RelevanceKernelFallback)
    ]
    if fallback:
        return fallback[0].split("; ")[0]
    expected_relevance, expected_index = search(query, [key], relevance_kernel="torch")
    largest = (relevance - expected_relevance).abs().max().item()
    if largest > 1e-5 or not torch.equal(index, expected_index):
        moved = int((index != expected_index).sum())
        return f"differs from the torch passes (relevance by up to {largest:.2g}, {moved} hard indices)"
    return None


def compile_step_check(device: torch.device, mode: str | None) -> None:
    """One compiled forward and backward of a small convolution network on ``device``."""
    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3, padding=1)
    ).to(device)
    step = torch.compile(network, dynamic=False, mode=mode)
    with _fresh_dynamo():
        step(torch.randn(2, 3, 16, 16, device=device)).square().mean().backward()


@contextlib.contextmanager
def _fresh_dynamo() -> Iterator[None]:
    """Leaves no compiled graph of the check behind for the run's own compilation."""
    try:
        yield
    finally:
        torch._dynamo.reset()
