"""The official TTSR code (researchmm/TTSR) timed on the same machine as ours: training step, inference.

The official code never enters this repository. Copy it once into the git-ignored ``third_party/``:

    mkdir -p third_party/TTSR
    git -C <clone of researchmm/TTSR> archive HEAD model loss utils.py option.py trainer.py LICENSE \\
        | tar -x -C third_party/TTSR

The harness imports those files as they are (``option.args`` gives the official defaults, the
``TTSR`` model, ``loss.get_loss_dict`` and the official ``Trainer``) and changes, without editing
them, only what cannot run on the measuring machines:

- ``torchvision.models.vgg19(pretrained=True)`` (LTE, LTE_copy, perceptual VGG) would download
  ImageNet weights; it builds a randomly initialised VGG19 instead (time and memory do not depend
  on the values). Where torchvision is not installed (this project's CPU machines: it would pull a
  CUDA build of torch), a stand-in ``torchvision`` provides ``models.vgg19`` with torchvision's
  ``features`` layout, built from :class:`ttsr_lightning.models.vgg19.VGG19Features`.
- ``cv2`` (only the official SSIM uses it) is stubbed where OpenCV is not installed.
- the critic's ``Adam(betas=(0, 0.9))``: torch >= 2 refuses int betas, so they are passed as floats.

A training step is the official ``Trainer.train`` over synthetic batches, timed between batches
(``torch.cuda.synchronize`` first), so it includes what the official loop does per batch: the copy
to the device, the forward, the losses, the critic steps, the backward and the Adam step.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import statistics
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
OFFICIAL_DIR = REPO_ROOT / "third_party" / "TTSR"
_OFFICIAL_FILES = ("model/TTSR.py", "model/LTE.py", "loss/loss.py", "utils.py", "option.py", "trainer.py")
# train.sh, "training TTSR": the loss weights of the full recipe (option.py's defaults are rec-only)
_TRAIN_SH = {"rec_w": 1.0, "per_w": 1e-2, "tpl_w": 1e-2, "adv_w": 1e-3, "print_every": 600}
PATCHES = [
    "torchvision.models.vgg19(pretrained=True) -> random weights (no download)",
    "loss.AdversarialLoss Adam betas (0, 0.9) -> (0.0, 0.9) (torch >= 2 refuses int betas)",
]


def add_official_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--official [DIR]``: also time ``what`` of the official code copied into DIR (default
    third_party/TTSR), side by side in the same run."""
    parser.add_argument(
        "--official",
        type=Path,
        nargs="?",
        const=OFFICIAL_DIR,
        help=f"also the official {what}, copied into this folder (default third_party/TTSR)",
    )


def missing_reason(root: Path = OFFICIAL_DIR) -> str | None:
    """Why the official code cannot be imported from ``root`` (None when it can)."""
    missing = [name for name in _OFFICIAL_FILES if not (root / name).is_file()]
    if missing:
        return (
            f"official code not found at {root} (missing {', '.join(missing)}): copy researchmm/TTSR "
            "there (see benchmarks/official_harness.py)"
        )
    return None


def source_description(root: Path = OFFICIAL_DIR) -> str:
    """The SOURCE note written next to the copy (commit), or the folder."""
    note = root / "SOURCE"
    return note.read_text().strip() if note.is_file() else str(root)


def _stand_in_torchvision() -> types.ModuleType:
    """A ``torchvision`` with what the official code uses: ``models.vgg19().features`` and ``utils``."""
    from ttsr_lightning.models.vgg19 import NUM_VGG19_LAYERS, VGG19Features

    def vgg19(pretrained: bool = False, **kwargs: Any) -> VGG19Features:
        return VGG19Features(NUM_VGG19_LAYERS, "random")  # .features: torchvision's indices

    package = types.ModuleType("torchvision")
    package.models = types.ModuleType("torchvision.models")  # type: ignore[attr-defined]
    package.models.vgg19 = vgg19  # type: ignore[attr-defined]
    package.utils = types.ModuleType("torchvision.utils")  # type: ignore[attr-defined]
    package.__path__ = []  # a package, so that `import torchvision.utils` resolves
    return package


def _random_vgg19_torchvision() -> None:
    """Makes ``torchvision.models.vgg19(pretrained=True)`` build random weights (or a stand-in)."""
    try:
        import torchvision
        import torchvision.models
    except ImportError:
        stand_in = _stand_in_torchvision()
        sys.modules.update(
            {
                "torchvision": stand_in,
                "torchvision.models": stand_in.models,  # type: ignore[attr-defined]
                "torchvision.utils": stand_in.utils,  # type: ignore[attr-defined]
            }
        )
        return
    real_vgg19 = torchvision.models.vgg19

    def vgg19(pretrained: bool = False, **kwargs: Any) -> torch.nn.Module:
        # Built on the meta device: the classifier (102 M parameters, seconds of random init per
        # call, three calls per model) is never used by the official code, so never allocated.
        with torch.device("meta"):
            network = real_vgg19(weights=None)
        network.features.to_empty(device="cpu")
        for layer in network.features:
            if isinstance(layer, torch.nn.Conv2d):  # torchvision's own VGG init
                torch.nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                torch.nn.init.zeros_(layer.bias)
        return network

    torchvision.models.vgg19 = vgg19


def _float_betas_adam(params: Any, betas: tuple[float, float], **kwargs: Any) -> torch.optim.Adam:
    return torch.optim.Adam(params, betas=(float(betas[0]), float(betas[1])), **kwargs)


def load(root: Path = OFFICIAL_DIR) -> types.SimpleNamespace:
    """Imports the official modules from ``root``: ``option`` (defaults), ``TTSR``, ``loss``, ``trainer``.

    The official files import each other as top-level ``model``, ``loss``, ``utils``: call this in a
    process of its own (the benchmark workers are), not in one that has such modules already.
    """
    reason = missing_reason(root)
    if reason is not None:
        raise FileNotFoundError(reason)
    _random_vgg19_torchvision()
    try:
        import cv2  # noqa: F401  (the official utils.py imports it for SSIM only)
    except ImportError:
        sys.modules["cv2"] = types.ModuleType("cv2")
    sys.path.insert(0, str(root))
    # model/ and loss/ have no __init__.py: bind them to this copy, whatever else is on sys.path
    for name in ("model", "loss"):
        package = types.ModuleType(name)
        package.__path__ = [str(root / name)]
        sys.modules[name] = package
    argv, sys.argv = sys.argv, ["option.py"]  # option.py parses the command line at import
    try:
        import option
    finally:
        sys.argv = argv
    import trainer
    from loss import loss
    from model import TTSR

    loss.optim = types.SimpleNamespace(Adam=_float_betas_adam)
    return types.SimpleNamespace(args=option.args, TTSR=TTSR.TTSR, loss=loss, Trainer=trainer.Trainer)


def official_args(
    official: types.SimpleNamespace,
    device: str,
    n_feats: int,
    num_res_blocks: tuple[int, ...],
    batch: int,
    lr_size: int,
) -> types.SimpleNamespace:
    """option.py's defaults with train.sh's TTSR loss weights, this size and this device."""
    args = types.SimpleNamespace(**vars(official.args))
    args.__dict__.update(_TRAIN_SH)
    args.cpu = device == "cpu"
    args.num_gpu = 1
    args.n_feats = n_feats
    args.num_res_blocks = "+".join(str(blocks) for blocks in num_res_blocks)
    args.batch_size = batch
    args.train_crop_size = lr_size  # sizes the critic: 4 * lr_size
    return args


class _TimedBatches:
    """The training 'dataloader': yields the batches and stamps the time before each and after the last.

    ``times[i+1] - times[i]`` is batch i's whole step; the peak-memory counter restarts at ``warmup``.
    """

    def __init__(self, batches: list[dict[str, torch.Tensor]], warmup: int, device: str) -> None:
        self.batches, self.warmup, self.device = batches, warmup, device
        self.times: list[float] = []
        self.baseline = 0

    def mark(self, index: int) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
        if index == self.warmup:
            self.baseline = _reset_peak(self.device)
        self.times.append(time.perf_counter())

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for index, batch in enumerate(self.batches):
            self.mark(index)
            yield dict(batch)  # the official prepare() replaces the entries in place

    def __len__(self) -> int:
        return len(self.batches)


def _reset_peak(device: str) -> int:
    from _measure import status_bytes

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    Path("/proc/self/clear_refs").write_text("5")
    return status_bytes("VmRSS")


def _peak(device: str, baseline: int) -> int:
    from _measure import status_bytes

    return (torch.cuda.max_memory_allocated() if device == "cuda" else status_bytes("VmHWM")) - baseline


def synthetic_batches(count: int, batch: int, lr_size: int) -> list[dict[str, torch.Tensor]]:
    """Official batch dicts (LR, LR_sr, HR, Ref, Ref_sr), uniform in [-1, 1], on the CPU."""
    generator = torch.Generator().manual_seed(0)
    hr_size = 4 * lr_size

    def image(size: int) -> torch.Tensor:
        return torch.rand(batch, 3, size, size, generator=generator) * 2 - 1

    return [
        {"LR": image(lr_size), "LR_sr": image(hr_size), "HR": image(hr_size), "Ref": image(hr_size),
         "Ref_sr": image(hr_size)}
        for _ in range(count)
    ]  # fmt: skip


def train_step(
    device: str,
    *,
    steps: int,
    warmup: int,
    batch: int = 9,
    lr_size: int = 40,
    n_feats: int = 64,
    num_res_blocks: tuple[int, ...] = (16, 16, 8, 4),
    reconstruction_only: bool = False,
    root: Path = OFFICIAL_DIR,
) -> dict[str, Any]:
    """The official training step (train.sh's TTSR losses; ``reconstruction_only``: an init epoch's)."""
    official = load(root)
    torch.manual_seed(0)
    args = official_args(official, device, n_feats, num_res_blocks, batch, lr_size)
    logger = logging.getLogger("official-ttsr")
    model = official.TTSR(args).to(device)
    losses = official.loss.get_loss_dict(args, logger)
    batches = _TimedBatches(synthetic_batches(warmup + steps, batch, lr_size), warmup, device)
    trainer = official.Trainer(args, logger, {"train": batches}, model, losses)
    trainer.train(current_epoch=1, is_init=reconstruction_only)
    batches.mark(len(batches))
    peak = _peak(device, batches.baseline)
    step = statistics.median(end - start for start, end in itertools.pairwise(batches.times[warmup:]))
    return {
        "step_seconds": step,
        "samples_per_second": batch / step,
        "peak_bytes": peak,
        "official": source_description(root),
        "patches": PATCHES,
    }


def inference(
    device: str,
    width: int,
    height: int,
    *,
    n_feats: int = 64,
    num_res_blocks: tuple[int, ...] = (16, 16, 8, 4),
    root: Path = OFFICIAL_DIR,
) -> dict[str, Any]:
    """The official generator under no_grad on an HR of width x height with a same-size reference."""
    from _measure import timed_peak
    from inference import generator_inputs

    official = load(root)
    torch.manual_seed(0)
    args = official_args(official, device, n_feats, num_res_blocks, batch=1, lr_size=40)
    model = official.TTSR(args).to(device).eval()

    def run(inputs: tuple[torch.Tensor, ...]) -> Any:
        lr, lr_up, ref, ref_down_up = inputs
        return model(lr=lr, lrsr=lr_up, ref=ref, refsr=ref_down_up)

    with torch.no_grad():
        run(generator_inputs(64, 48, device))  # warm-up: allocator, kernels
        inputs = generator_inputs(width, height, device)
        elapsed, peak = timed_peak(lambda: run(inputs), device)
    return {"seconds": elapsed, "peak_bytes": peak, "official": source_description(root), "patches": PATCHES}
