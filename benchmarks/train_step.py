"""Training-step speed of the paper's configuration: fp32 eager vs the speed options, side by side.

    python benchmarks/train_step.py [--device cuda] [--steps 10] [--threads N] [--sets "fp32 eager" ...]

One TTSR training step at the paper's size (batch 9, LR 40x40, HR/Ref 160x160, n_feats 64, blocks
16+16+8+4) with every loss on (L1, perceptual, transferal perceptual, WGAN-GP with 2 critic steps),
random VGG weights, synthetic images. Each option set runs in a fresh process: a Lightning fit of
``warmup + steps`` batches; the warm-up batches (compilation, cuDNN autotuning) are not timed.
Prints samples/s, step time and peak memory (CPU: peak RSS growth; GPU: max allocated), each with
its ratio to fp32 eager, and the warm-up's time apart (compilation, CUDA-graph recording and cuDNN
autotuning happen there; with ``torch.compile`` also the graphs compiled during the timed steps, which
must be none), and writes the table to benchmarks/results/train_step_<device>.json.

"fp32 eager" runs with PyTorch's default numerics: on a GPU that means TF32 cuDNN convolutions and
fp32 (not TF32) matrix products. "fp32 strict" turns TF32 convolutions off as well; "TF32 matmul"
allows TF32 in matrix products (``torch.set_float32_matmul_precision("high")``). The TF32 switches
are process settings, not options of this suite's configs. :func:`measure_step` is also what
``gpu_suite.py`` runs (other sizes, the reconstruction-only warm-up step).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_description  # noqa: E402
from _measure import gib, parse_arguments, ratio, run_case, run_worker_if_asked, status_bytes  # noqa: E402

BATCH = 9
LR_SIZE = 40

# option set -> (system, optim, trainer, generator options; backends: the TF32 switches); GPU-only marked
OPTION_SETS: dict[str, dict[str, dict[str, Any]]] = {
    "fp32 eager": {},
    "fp32 strict (no TF32 convolutions)": {"backends": {"conv_tf32": False}},
    "TF32 matmul": {"backends": {"matmul_tf32": True}},
    "copy LTE every step (official)": {"system": {"lazy_lte_copy_sync": False}},
    "channels_last": {"system": {"channels_last": True}},
    "batched LTE pass": {"generator": {"batched_extractor": True}},
    "torch.compile": {"system": {"compile": True}},
    "torch.compile, CUDA graphs": {"system": {"compile": True, "compile_mode": "reduce-overhead"}},
    "bf16 autocast": {"trainer": {"precision": "bf16-mixed"}},
    "fused Adam": {"optim": {"fused": True}},
    "cudnn benchmark": {"trainer": {"benchmark": True}},
    "all eager options": {  # all of the above but torch.compile: measured in seconds, no compile time
        "system": {"channels_last": True},
        "generator": {"batched_extractor": True},
        "trainer": {"precision": "bf16-mixed", "benchmark": True},
        "optim": {"fused": True},
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
    "fp32, torch.compile, CUDA graphs": {  # the paper's numerics (TF32 convolutions as by default)
        "system": {"compile": True, "compile_mode": "reduce-overhead"},
        "trainer": {"benchmark": True},
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
        losses={
            "terms": {
                "reconstruction": {"_target_": "ttsr_lightning.losses.ReconstructionLoss", "weight": 1.0},
                "adversarial": {
                    "_target_": "ttsr_lightning.losses.WGANGPLoss",
                    "weight": 1e-3,
                    "after_warmup": True,
                },
                "perceptual": {
                    "_target_": "ttsr_lightning.losses.PerceptualLoss",
                    "weight": 1e-2,
                    "after_warmup": True,
                    "vgg_weights": "random",
                },
                "transferal_perceptual": {
                    "_target_": "ttsr_lightning.losses.TransferalPerceptualLoss",
                    "weight": 1e-2,
                    "after_warmup": True,
                },
            },
        },
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
        "warmup_seconds": sum(timer.warmup_times),  # compiling, recording CUDA graphs, autotuning
        "first_step_seconds": timer.warmup_times[0] if timer.warmup_times else step,
        "graphs_compiled_while_timed": _compiled_graphs() - timer.graphs_at_timing,
        "backends": backends,
    }


def _compiled_graphs() -> int:
    """Graphs Dynamo has compiled in this process (0 where nothing imported it)."""
    if "torch._dynamo" not in sys.modules:
        return 0
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def measure(option_set: str, steps_and_warmup: str, device: str) -> dict[str, float]:
    """In a case process: the paper-size step with one option set (``steps_and_warmup``: 'S+W')."""
    steps, warmup = (int(v) for v in steps_and_warmup.split("+"))
    result = measure_step(option_set, steps=steps, warmup=warmup, device=device)
    return {key: value for key, value in result.items() if key != "backends"}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 2 on CPU, 20 on GPU)")
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed steps (default: 1 on CPU, 5 on GPU)"
    )
    parser.add_argument("--sets", nargs="+", choices=list(OPTION_SETS), help="only these option sets")
    args = parse_arguments(parser)
    if run_worker_if_asked(args, measure):
        return
    steps = args.steps or (20 if args.device == "cuda" else 2)
    warmup = args.warmup if args.warmup is not None else (5 if args.device == "cuda" else 1)
    sets = args.sets or (list(OPTION_SETS) if args.device == "cuda" else CPU_SETS)
    print(f"# Training step, batch {BATCH}, LR {LR_SIZE}x{LR_SIZE}, all losses; {machine_description()}")
    print(f"# {warmup} warm-up + {steps} timed steps per option set (median), each in a fresh process\n")
    results: dict[str, dict[str, float] | str] = {}
    for name in sets:
        results[name] = run_case(__file__, args, name, f"{steps}+{warmup}")
        print(f"  measured {name}: {results[name]}", file=sys.stderr)
    base = results.get("fp32 eager")
    base_ok = base if isinstance(base, dict) else None
    rows = ["| option set | step time | samples/s | vs fp32 eager | peak memory | memory vs fp32 eager "
            "| warm-up (compile) | graphs compiled while timed |",
            "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, result in results.items():
        if isinstance(result, str):
            rows.append(f"| {name} | {result} | | | | | | |")
            continue
        speed = ratio(result["samples_per_second"], base_ok and base_ok["samples_per_second"])
        memory = ratio(result["peak_bytes"], base_ok and base_ok["peak_bytes"])
        rows.append(
            f"| {name} | {result['step_seconds']:.3f} s | {result['samples_per_second']:.2f} | {speed} | "
            f"{gib(int(result['peak_bytes']))} | {memory} | {result['warmup_seconds']:.1f} s "
            f"| {result['graphs_compiled_while_timed']} |"
        )
    print("\n".join(rows))
    if args.device == "cpu":
        print("\nbf16 autocast, fused Adam and cudnn benchmark are GPU options: run with --device cuda.")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"train_step_{args.device}.json").write_text(
        json.dumps({"machine": machine_description(), "results": results}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
