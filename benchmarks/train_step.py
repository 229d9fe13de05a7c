"""Training-step speed of the paper's configuration: fp32 eager vs the speed options, side by side.

    python benchmarks/train_step.py [--device cuda] [--steps 10] [--threads N] [--sets "fp32 eager" ...]
    python benchmarks/train_step.py --device cuda --official third_party/TTSR   # the official step too
    python benchmarks/train_step.py --tiny       # the same code path, tiny sizes: seconds on a CPU

One TTSR training step at the paper's size (batch 9, LR 40x40, HR/Ref 160x160, n_feats 64, blocks
16+16+8+4) with every loss on (L1, perceptual, transferal perceptual, WGAN-GP with 2 critic steps),
random VGG weights, synthetic images. Each option set runs in a fresh process: a Lightning fit of
``warmup + steps`` batches; the warm-up batches (compilation, cuDNN autotuning) are not timed.
Prints samples/s, step time and peak memory (CPU: peak RSS growth; GPU: max allocated), each with
its ratio to fp32 eager, and the warm-up's time apart (compilation, CUDA-graph recording and cuDNN
autotuning happen there; with ``torch.compile`` also the graphs compiled during the timed steps, which
must be none), and writes the table to outputs/benchmarks/train_step_<device>.json.

"fp32 eager" runs with PyTorch's default numerics: on a GPU that means TF32 cuDNN convolutions and
fp32 (not TF32) matrix products. "fp32 strict" turns TF32 convolutions off as well; "TF32 matmul"
allows TF32 in matrix products (``torch.set_float32_matmul_precision("high")``). The TF32 switches
are process settings, not options of this suite's configs.

The ", warm-up step" cases time the step of the recipe's reconstruction-only warm-up epochs; with
them the table is followed by the recipe projected from the measured steps: TTSR, 2 warm-up epochs +
50 all-losses epochs of ceil(11,871 / 9) = 1,319 steps, and TTSR-rec, 200 warm-up-like epochs (data
loading, validation and checkpoints excluded). ``--official DIR`` adds the official code's step
(``official_harness.py``: researchmm/TTSR copied into DIR, ``third_party/TTSR`` by default; the run
says why when it is not there) in the same run, so every row also gets its ratio to the official step.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from ttsr_lightning.config_paths import packaged_option
from ttsr_lightning.markdown import markdown_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import official_harness  # noqa: E402
from _measure import (  # noqa: E402
    gib,
    model_size,
    parse_arguments,
    ratio,
    run_case,
    run_worker_if_asked,
    status_bytes,
    write_record,
)
from environment import describe, environment  # noqa: E402

BATCH = 9
LR_SIZE = 40
TINY_BATCH, TINY_LR_SIZE = 2, 8
WARMUP_STEP = ", warm-up step"  # a case name's suffix: the reconstruction-only step of the warm-up epochs
OFFICIAL = "official code"
# the recipe (paper, official train.sh): 11,871 CUFED pairs, batch 9; TTSR 2 warm-up + 50 epochs
STEPS_PER_EPOCH = math.ceil(11_871 / 9)
TTSR_EPOCHS, TTSR_REC_EPOCHS = (2, 50), 200
V100_REFERENCE = "~10 h for the official code's TTSR recipe on one V100 (a third-party report)"

# option set -> (system, optim, trainer, generator options; backends: the TF32 switches); GPU-only marked
OPTION_SETS: dict[str, dict[str, dict[str, Any]]] = {
    "fp32 eager": {},
    "fp32 strict (no TF32 convolutions)": {"backends": {"conv_tf32": False}},
    "TF32 matmul": {"backends": {"matmul_tf32": True}},
    "copy LTE every step (official)": {"system": {"lazy_lte_copy_sync": False}},
    "channels_last": {"system": {"channels_last": True}},
    "batched LTE pass": {"generator": {"batched_extractor": True}},
    "bf16 autocast": {"trainer": {"precision": "bf16-mixed"}},
    "fused Adam": {"optim": {"fused": True}},
    "cudnn benchmark": {"trainer": {"benchmark": True}},
    "all eager options": {  # all of the above but torch.compile: measured in seconds, no compile time
        "system": {"channels_last": True},
        "generator": {"batched_extractor": True},
        "trainer": {"precision": "bf16-mixed", "benchmark": True},
        "optim": {"fused": True},
    },
    # the compiling ones last (a warm-up of minutes)
    "torch.compile": {"system": {"compile": True}},
    "torch.compile, CUDA graphs": {"system": {"compile": True, "compile_mode": "reduce-overhead"}},
    "fp32, torch.compile, CUDA graphs": {  # the paper's numerics (TF32 convolutions as by default)
        "system": {"compile": True, "compile_mode": "reduce-overhead"},
        "trainer": {"benchmark": True},
    },
    "all of the above": {
        "system": {"channels_last": True, "compile": True},
        "generator": {"batched_extractor": True},
        "trainer": {"precision": "bf16-mixed", "benchmark": True},
        "optim": {"fused": True},
    },
    "all of the above, CUDA graphs": {
        "system": {"channels_last": True, "compile": True, "compile_mode": "reduce-overhead"},
        "generator": {"batched_extractor": True},
        "trainer": {"precision": "bf16-mixed", "benchmark": True},
        "optim": {"fused": True},
    },
}
GPU_ONLY = {
    "bf16 autocast",
    "fused Adam",
    "cudnn benchmark",
    "fp32 strict (no TF32 convolutions)",
    "TF32 matmul",
    "all eager options",
    "torch.compile, CUDA graphs",
    "all of the above, CUDA graphs",
    "fp32, torch.compile, CUDA graphs",
}
# PyTorch's defaults: TF32 in cuDNN convolutions, full fp32 in matrix products
DEFAULT_BACKENDS = {"conv_tf32": True, "matmul_tf32": False}
CPU_SETS = [
    "fp32 eager",
    "copy LTE every step (official)",
    "channels_last",
    "batched LTE pass",
    "torch.compile",
]
# the tiny run: every option's code path runs in "all of the above" (torch.compile disabled: inductor's
# CPU build takes minutes)
TINY_SETS = ["fp32 eager", "all of the above"]
# the option sets whose warm-up step is measured too (for the projection)
WARMUP_STEP_SETS = ["fp32 eager", "all eager options", "all of the above, CUDA graphs"]


def synthetic_batches(
    count: int, batch: int = BATCH, lr_size: int = LR_SIZE
) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)

    def image(size: int) -> torch.Tensor:
        return torch.rand(batch, 3, size, size, generator=generator) * 2 - 1

    hr_size = 4 * lr_size
    return [
        {"lr": image(lr_size), "lr_up": image(hr_size), "hr": image(hr_size), "ref": image(hr_size),
         "ref_down_up": image(hr_size)}
        for _ in range(count)
    ]  # fmt: skip


def paper_losses() -> dict[str, Any]:
    """The package's loss group (conf/loss/default.yaml: the paper's terms and weights), random VGG."""
    config = OmegaConf.create({"model": {"generator": {"vgg_weights": "random"}}})
    config.loss = packaged_option("loss", "default")
    losses: dict[str, Any] = OmegaConf.to_container(config.loss, resolve=True)  # type: ignore[assignment]
    return losses


def set_backends(backends: dict[str, bool]) -> dict[str, Any]:
    """Applies the TF32 switches (unnamed ones at PyTorch's defaults); returns what is now in force."""
    settings = {**DEFAULT_BACKENDS, **backends}
    torch.set_float32_matmul_precision("high" if settings["matmul_tf32"] else "highest")
    torch.backends.cudnn.allow_tf32 = settings["conv_tf32"]
    return {
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
    }


def measure_step(
    option_set: str,
    *,
    steps: int,
    warmup: int,
    device: str,
    batch: int = BATCH,
    lr_size: int = LR_SIZE,
    n_feats: int = 64,
    num_res_blocks: tuple[int, ...] = (16, 16, 8, 4),
    reconstruction_only: bool = False,
) -> dict[str, Any]:
    """Fit warm-up + timed batches with one option set: median step time and peak memory.

    ``reconstruction_only`` times the step of the recipe's warm-up epochs (every loss configured, the
    system in its reconstruction-only phase) instead of the all-losses step.
    """
    from lightning.pytorch import Callback, Trainer

    from ttsr_lightning.system import TTSRSystem

    options = OPTION_SETS[option_set]
    backends = set_backends(options.get("backends", {}))
    system = TTSRSystem(
        generator={
            "_target_": "ttsr_lightning.models.TTSRGenerator",
            "vgg_weights": "random",
            "n_feats": n_feats,
            "num_res_blocks": list(num_res_blocks),
            **options.get("generator", {}),
        },
        discriminator={"_target_": "ttsr_lightning.models.Discriminator", "in_size": 4 * lr_size},
        losses=paper_losses(),
        optim={"warmup_epochs": 1 if reconstruction_only else 0, **options.get("optim", {})},
        **options.get("system", {}),
    )

    class StepTimer(Callback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.warmup_times: list[float] = []
            self.graphs_at_timing = 0
            self.start = 0.0
            self.baseline = 0
            self.phases: set[bool] = set()  # in_warmup of the timed batches

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            if batch_idx >= warmup:
                self.phases.add(pl_module.in_warmup)
            if batch_idx == warmup:
                self.graphs_at_timing = _compiled_graphs()
                if device == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    self.baseline = torch.cuda.memory_allocated()
                else:
                    Path("/proc/self/clear_refs").write_text("5")
                    self.baseline = status_bytes("VmRSS")
            if device == "cuda":
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_train_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
        ) -> None:
            if device == "cuda":
                torch.cuda.synchronize()
            (self.times if batch_idx >= warmup else self.warmup_times).append(
                time.perf_counter() - self.start
            )

    timer = StepTimer()
    trainer_options = {"precision": "32-true", "benchmark": False, **options.get("trainer", {})}
    trainer = Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        **trainer_options,
    )
    trainer.fit(
        system,
        train_dataloaders=torch.utils.data.DataLoader(
            synthetic_batches(warmup + steps, batch, lr_size), batch_size=None
        ),
    )
    if timer.phases != {reconstruction_only}:  # the phase timed must be the phase asked for
        raise RuntimeError(f"timed the wrong phase: in_warmup {timer.phases}")
    peak = (torch.cuda.max_memory_allocated() if device == "cuda" else status_bytes("VmHWM")) - timer.baseline
    step = sorted(timer.times)[len(timer.times) // 2]  # median
    return {
        "step_seconds": step,
        "samples_per_second": batch / step,
        "peak_bytes": float(peak),
        "warmup_seconds": float(sum(timer.warmup_times)),  # compiling, recording CUDA graphs, autotuning
        "first_step_seconds": timer.warmup_times[0] if timer.warmup_times else step,
        "graphs_compiled_while_timed": _compiled_graphs() - timer.graphs_at_timing,
        "backends": backends,
    }


def _compiled_graphs() -> int:
    """Graphs Dynamo has compiled in this process (0 where nothing imported it)."""
    if "torch._dynamo" not in sys.modules:
        return 0
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def measure(name: str, steps_and_warmup: str, args: argparse.Namespace) -> dict[str, Any]:
    """In a case process: one case (an option set or the official code, ", warm-up step": the warm-up
    epochs' step) at the paper's size or the tiny one; ``steps_and_warmup``: 'S+W'."""
    steps, warmup = (int(v) for v in steps_and_warmup.split("+"))
    n_feats, blocks = model_size(args)
    batch, lr_size = (TINY_BATCH, TINY_LR_SIZE) if args.tiny else (BATCH, LR_SIZE)
    common: dict[str, Any] = {"steps": steps, "warmup": warmup, "batch": batch, "lr_size": lr_size,
                              "n_feats": n_feats, "num_res_blocks": blocks,
                              "reconstruction_only": name.endswith(WARMUP_STEP)}  # fmt: skip
    option_set = name.removesuffix(WARMUP_STEP)
    if option_set == OFFICIAL:
        return official_harness.train_step(args.device, root=args.official, **common)
    result = measure_step(option_set, device=args.device, **common)
    return {key: value for key, value in result.items() if key != "backends"}


def projection(results: dict[str, dict[str, Any] | str]) -> list[dict[str, Any]]:
    """Hours of the TTSR and TTSR-rec recipes for every setting whose warm-up step was measured too,
    and for the fastest all-losses step with the fastest warm-up step."""
    steps = {name: result["step_seconds"] for name, result in results.items() if isinstance(result, dict)}
    pairs = [
        (name, steps[name + WARMUP_STEP], step) for name, step in steps.items() if name + WARMUP_STEP in steps
    ]
    ours = [name for name in steps if not name.startswith(OFFICIAL)]
    full = min((name for name in ours if not name.endswith(WARMUP_STEP)), key=steps.__getitem__, default=None)
    warm = min((name for name in ours if name.endswith(WARMUP_STEP)), key=steps.__getitem__, default=None)
    if full and warm and full != warm.removesuffix(WARMUP_STEP):
        pairs.append(
            (f"fastest ({full}; warm-up step: {warm.removesuffix(WARMUP_STEP)})", steps[warm], steps[full])
        )
    return [
        {"setting": name, "warmup_step_seconds": warm_step, "full_step_seconds": full_step,
         "ttsr_hours": STEPS_PER_EPOCH * (TTSR_EPOCHS[0] * warm_step + TTSR_EPOCHS[1] * full_step) / 3600,
         "ttsr_rec_hours": STEPS_PER_EPOCH * TTSR_REC_EPOCHS * warm_step / 3600}
        for name, warm_step, full_step in pairs
    ]  # fmt: skip


def _cell(result: dict[str, Any], key: str) -> str:
    value = result.get(key)  # the official code's step has neither
    return "-" if value is None else f"{value:.1f} s" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, help="timed steps (default: 2 on CPU, 20 on GPU, 1 tiny)")
    parser.add_argument("--warmup", type=int, help="untimed steps (default: 1 on CPU, 5 on GPU, 0 tiny)")
    parser.add_argument("--sets", nargs="+", choices=list(OPTION_SETS), help="only these option sets")
    official_harness.add_official_argument(parser, "code's step")
    args = parse_arguments(parser)
    if run_worker_if_asked(args, measure):
        return
    on_gpu = args.device == "cuda"
    steps = args.steps or (1 if args.tiny else 20 if on_gpu else 2)
    warmup = args.warmup if args.warmup is not None else (0 if args.tiny else 5 if on_gpu else 1)
    sets = args.sets or (TINY_SETS if args.tiny else list(OPTION_SETS) if on_gpu else CPU_SETS)
    if args.tiny:
        os.environ["TORCH_COMPILE_DISABLE"] = "1"  # the case processes inherit it
    names = [
        name
        for option_set in sets
        for name in (option_set, *[option_set + WARMUP_STEP] * (option_set in WARMUP_STEP_SETS))
    ]
    results: dict[str, dict[str, Any] | str] = {}
    extra: list[str] = []
    if args.official is not None:
        if reason := official_harness.missing_reason(args.official):
            results[OFFICIAL] = f"not measured: {reason}"
        else:
            names = [OFFICIAL, OFFICIAL + WARMUP_STEP, *names]
            extra = ["--official", str(args.official)]
    env = environment(args.device, args.tiny)
    batch, lr_size = (TINY_BATCH, TINY_LR_SIZE) if args.tiny else (BATCH, LR_SIZE)
    print(
        f"# Training step, batch {batch}, LR {lr_size}x{lr_size}, n_feats {model_size(args)[0]}, all losses"
    )
    print(describe(env))
    print(f"# {warmup} warm-up + {steps} timed steps per case (median), each in a fresh process\n")
    for name in names:
        results[name] = run_case(__file__, args, name, f"{steps}+{warmup}", extra)
        print(f"  measured {name}: {results[name]}", file=sys.stderr, flush=True)
    header = (
        "case",
        "step time",
        "samples/s",
        "vs fp32 eager",
        "vs official",
        "peak memory",
        "memory vs fp32 eager",
        "warm-up (compile)",
        "graphs compiled while timed",
    )
    rows: list[tuple[object, ...]] = []
    for name, result in results.items():
        if isinstance(result, str):
            rows.append((name, result, *[None] * (len(header) - 2)))
            continue
        suffix = WARMUP_STEP if name.endswith(WARMUP_STEP) else ""
        base, official = (results.get(f"{n}{suffix}") for n in ("fp32 eager", OFFICIAL))
        base_ok = base if isinstance(base, dict) else {}
        official_ok = official if isinstance(official, dict) else {}
        rows.append(
            (
                name,
                f"{result['step_seconds'] * 1000:.1f} ms",
                f"{result['samples_per_second']:.2f}",
                ratio(result["samples_per_second"], base_ok.get("samples_per_second")),
                ratio(result["samples_per_second"], official_ok.get("samples_per_second")),
                gib(int(result["peak_bytes"])),
                ratio(result["peak_bytes"], base_ok.get("peak_bytes")),
                _cell(result, "warmup_seconds"),
                _cell(result, "graphs_compiled_while_timed"),
            )
        )
    print(markdown_table(header, rows))
    if not on_gpu:
        print("\nbf16 autocast, fused Adam and cudnn benchmark are GPU options: run with --device cuda.")
    projected = projection(results)
    print(f"\n## Recipe projection: TTSR {TTSR_EPOCHS[0]} warm-up + {TTSR_EPOCHS[1]} epochs, TTSR-rec "
          f"{TTSR_REC_EPOCHS} epochs, {STEPS_PER_EPOCH:,} steps each (no data loading, validation, "
          f"checkpoints); reference: {V100_REFERENCE}\n")  # fmt: skip
    projection_cells = [
        (
            row["setting"],
            f"{row['warmup_step_seconds'] * 1000:.1f} ms",
            f"{row['full_step_seconds'] * 1000:.1f} ms",
            f"{row['ttsr_hours']:.2f} h",
            f"{row['ttsr_rec_hours']:.2f} h",
        )
        for row in projected
    ]
    print(
        markdown_table(("setting", "warm-up step", "all-losses step", "TTSR", "TTSR-rec"), projection_cells)
    )
    record = {"environment": env, "command": sys.argv, "results": results, "projection": projected}
    write_record(args.out, f"train_step_{args.device}.json", record)


if __name__ == "__main__":
    main()
