"""Training-step speed of the paper's configuration: fp32 eager vs the speed options, side by side.

    python benchmarks/train_step.py [--device cuda] [--steps 10] [--threads N]

One TTSR training step at the paper's size (batch 9, LR 40x40, HR/Ref 160x160, n_feats 64, blocks
16+16+8+4) with every loss on (L1, perceptual, transferal perceptual, WGAN-GP with 2 critic steps),
random VGG weights, synthetic images. Each option set runs in a fresh process: a Lightning fit of
``warmup + steps`` batches; the warm-up batches (compilation, cuDNN autotuning) are not timed.
Prints samples/s, step time and peak memory (CPU: peak RSS growth; GPU: max allocated), each with
its ratio to fp32 eager, and writes the table to benchmarks/results/train_step_<device>.json.
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

# option set -> (system options, optim options, trainer options, generator options); GPU-only ones marked
OPTION_SETS: dict[str, dict[str, dict[str, Any]]] = {
    "fp32 eager": {},
    "copy LTE every step (official)": {"system": {"lazy_lte_copy_sync": False}},
    "channels_last": {"system": {"channels_last": True}},
    "batched LTE pass": {"generator": {"batched_extractor": True}},
    "torch.compile": {"system": {"compile": True}},
    "bf16 autocast": {"trainer": {"precision": "bf16-mixed"}},
    "fused Adam": {"optim": {"fused": True}},
    "cudnn benchmark": {"trainer": {"benchmark": True}},
    "all of the above": {
        "system": {"channels_last": True, "compile": True},
        "generator": {"batched_extractor": True},
        "trainer": {"precision": "bf16-mixed", "benchmark": True},
        "optim": {"fused": True},
    },
}
GPU_ONLY = {"bf16 autocast", "fused Adam", "cudnn benchmark"}
CPU_SETS = [
    "fp32 eager",
    "copy LTE every step (official)",
    "channels_last",
    "batched LTE pass",
    "torch.compile",
]


def synthetic_batches(count: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)

    def image(size: int) -> torch.Tensor:
        return torch.rand(BATCH, 3, size, size, generator=generator) * 2 - 1

    hr_size = 4 * LR_SIZE
    return [
        {"lr": image(LR_SIZE), "lr_up": image(hr_size), "hr": image(hr_size), "ref": image(hr_size),
         "ref_down_up": image(hr_size)}
        for _ in range(count)
    ]  # fmt: skip


def measure(option_set: str, steps_and_warmup: str, device: str) -> dict[str, float]:
    """In a case process: fit warm-up + timed batches with one option set; time and peak memory."""
    from lightning.pytorch import Callback, Trainer

    from ttsr_lightning.system import TTSRSystem

    steps, warmup = (int(v) for v in steps_and_warmup.split("+"))
    options = OPTION_SETS[option_set]
    system = TTSRSystem(
        generator={
            "_target_": "ttsr_lightning.models.TTSRGenerator",
            "vgg_weights": "random",
            **options.get("generator", {}),
        },
        discriminator={"_target_": "ttsr_lightning.models.Discriminator", "in_size": 4 * LR_SIZE},
        losses={
            "reconstruction": {"_target_": "ttsr_lightning.losses.ReconstructionLoss"},
            "perceptual": {"_target_": "ttsr_lightning.losses.PerceptualLoss", "vgg_weights": "random"},
            "transferal_perceptual": {"_target_": "ttsr_lightning.losses.TransferalPerceptualLoss"},
            "adversarial": {"_target_": "ttsr_lightning.losses.WGANGPLoss"},
            "weights": {
                "reconstruction": 1.0,
                "perceptual": 1e-2,
                "transferal_perceptual": 1e-2,
                "adversarial": 1e-3,
            },
        },
        optim={"warmup_epochs": 0, **options.get("optim", {})},
        **options.get("system", {}),
    )

    class StepTimer(Callback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.start = 0.0
            self.baseline = 0

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            if batch_idx == warmup:
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
            if batch_idx >= warmup:
                self.times.append(time.perf_counter() - self.start)

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
        train_dataloaders=torch.utils.data.DataLoader(synthetic_batches(warmup + steps), batch_size=None),
    )
    peak = (torch.cuda.max_memory_allocated() if device == "cuda" else status_bytes("VmHWM")) - timer.baseline
    step = sorted(timer.times)[len(timer.times) // 2]  # median
    return {"step_seconds": step, "samples_per_second": BATCH / step, "peak_bytes": float(peak)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 2 on CPU, 20 on GPU)")
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed steps (default: 1 on CPU, 5 on GPU)"
    )
    args = parse_arguments(parser)
    if run_worker_if_asked(args, measure):
        return
    steps = args.steps or (20 if args.device == "cuda" else 2)
    warmup = args.warmup if args.warmup is not None else (5 if args.device == "cuda" else 1)
    sets = list(OPTION_SETS) if args.device == "cuda" else CPU_SETS
    print(f"# Training step, batch {BATCH}, LR {LR_SIZE}x{LR_SIZE}, all losses; {machine_description()}")
    print(f"# {warmup} warm-up + {steps} timed steps per option set (median), each in a fresh process\n")
    results: dict[str, dict[str, float] | str] = {}
    for name in sets:
        results[name] = run_case(__file__, args, name, f"{steps}+{warmup}")
        print(f"  measured {name}: {results[name]}", file=sys.stderr)
    base = results["fp32 eager"]
    base_ok = base if isinstance(base, dict) else None
    rows = ["| option set | step time | samples/s | vs fp32 eager | peak memory | memory vs fp32 eager |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for name, result in results.items():
        if isinstance(result, str):
            rows.append(f"| {name} | {result} | | | | |")
            continue
        speed = ratio(result["samples_per_second"], base_ok and base_ok["samples_per_second"])
        memory = ratio(result["peak_bytes"], base_ok and base_ok["peak_bytes"])
        rows.append(
            f"| {name} | {result['step_seconds']:.3f} s | {result['samples_per_second']:.2f} | {speed} | "
            f"{gib(int(result['peak_bytes']))} | {memory} |"
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
