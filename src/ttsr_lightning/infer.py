"""``python -m ttsr_lightning.infer lr=IMG ref=IMG out=IMG [ckpt=PATH]``: x4 super-resolution for users.

Any LR size, any reference, on CPU or GPU. Preprocessing is the official demo's (researchmm/TTSR's
``test.sh`` and ``dataset/`` code): the LR is used as it is and ``lr_up`` is its PIL bicubic x4; the
reference is cropped top-left to multiples of 4 and ``ref_down_up`` is that crop PIL bicubic /4 then
x4; the SR is saved as ``round((sr + 1) * 127.5)``.

- ``lr``, ``ref`` and ``out`` may be files or folders. A folder of LR images pairs with a folder of
  references by file stem (``a.png`` with ``a.jpg``) or with one reference image for all; the SR
  images are written as ``<out>/<stem>.png``. A single LR file goes to ``out`` (or
  ``<out>/<stem>.png`` when ``out`` is a folder).
- ``ckpt``: any weights file :mod:`ttsr_lightning.checkpoints.loading` reads (a training run's ``.ckpt``,
  the official ``TTSR.pt`` / ``TTSR-rec.pt``, a converted generator file). Without it, the paper's
  generator runs with random weights: a demo of the pipeline whose output is noise, and the log says
  so loudly. A checkpoint of another generator (:mod:`ttsr_lightning.models.interface`) runs its own
  plain forward.
- ``ref``: one image for every LR image; a list of images (``ref=[a.png,b.png]``, or the quoted
  string ``ref='a.png,b.png'``), all of them searched at once for every LR image (native
  multi-reference: the best match over all references wins at each position); or a folder holding,
  per LR image, an image with its stem or a subfolder with its stem whose images are its references.
- ``save_attention=true`` also writes ``<out stem>_attention.png`` beside each SR: SR | soft
  attention | hard-attention correspondences | Ref colour key (:mod:`ttsr_lightning.attention_maps`);
  with several references, which reference each region took its texture from.

Memory: ``max_memory`` (``auto``: 60 % of the free RAM on CPU, 80 % of the free GPU memory on CUDA;
``4GiB``, ``512MB``, bytes; ``null``: no budget) bounds the peak memory growth of each image's forward
pass, so any LR size runs (:mod:`ttsr_lightning.budgeted`): when the whole image fits, the generator's
forward runs as it is (lean: every map dropped once used); otherwise the search stays global and the
main network runs in overlapping tiles of the LR grid with ``halo`` LR pixels of context around each
(default 32; the tiling is logged). Only references whose search features alone (~0.5 KB per
reference pixel) cannot fit the budget are refused, before any work starts. The budget is TTSR's:
another generator runs its whole forward, whatever ``max_memory``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from omegaconf import DictConfig
from PIL import Image
from torch import nn
from tqdm import tqdm

from ttsr_lightning.attention_maps import attention_panel, reference_choice_panel
from ttsr_lightning.budgeted import (
    DEFAULT_HALO,
    ForwardPlan,
    MemoryBudgetError,
    budgeted_forward,
    format_bytes,
    memory_budget,
    parse_halo,
    parse_memory_setting,
    plan_for_inputs,
    plan_forward,
)
from ttsr_lightning.checkpoints.loading import load_generator
from ttsr_lightning.checkpoints.torch_file import KINDS_EXPECTED
from ttsr_lightning.cli import hydra_entry_point
from ttsr_lightning.data.errors import ImageError
from ttsr_lightning.data.image_io import (
    IMAGE_SUFFIXES,
    RGBImageReader,
    list_images,
    require_unique_stems,
    save_image,
)
from ttsr_lightning.data.preprocessing import (
    SCALE,
    bicubic_resize,
    crop_to_multiple_of_scale,
    down_up,
    to_tensor,
)
from ttsr_lightning.errors import ConfigError
from ttsr_lightning.files import check_output_folder, remove_unfinished_writes
from ttsr_lightning.models import SEARCH_TRANSFERS, GeneratorOutput, TTSRGenerator
from ttsr_lightning.models.patch_search import RELEVANCE_KERNELS
from ttsr_lightning.panel_images import to_uint8_image

log = logging.getLogger(__name__)

ATTENTION_SUFFIX = "_attention"
_RANDOM_WEIGHTS_WARNING = "\n".join(
    [
        "!" * 100,
        "!! NO CHECKPOINT (ckpt=null): the generator has RANDOM weights and its output is noise.",
        "!! This run only demonstrates the pipeline. Pass ckpt=PATH: " + KINDS_EXPECTED + ".",
        "!" * 100,
    ]
)


def random_generator(search_transfer: str, relevance_kernel: str = "torch") -> TTSRGenerator:
    """The paper's generator with random weights (ckpt=null), loudly announced."""
    log.warning(_RANDOM_WEIGHTS_WARNING)
    return TTSRGenerator(
        vgg_weights="random", search_transfer=search_transfer, relevance_kernel=relevance_kernel
    ).eval()


# ---------------------------------------------------------------------------------------------- files
class InferenceJob(NamedTuple):
    """One image to super-resolve: the LR file, its reference file(s), where the SR goes."""

    lr: Path
    refs: tuple[Path, ...]
    out: Path


def plan_jobs(lr: str | Path, ref: str | Path | Sequence[str | Path], out: str | Path) -> list[InferenceJob]:
    """Pairs LR images with references and output paths; errors name ``lr``, ``ref`` or ``out``.

    ``lr`` a file: ``out`` is the SR file (an image suffix), or a folder (an existing one, or a path
    without suffix) that receives ``<stem>.png``. ``lr`` a folder: every image in it, ``out`` a
    folder. ``ref``: a file, the reference of every LR image; a list of files (or one string of
    comma-separated files), the references of every LR image (searched at once); a folder, per LR
    image the file with its stem or, when there is none, the subfolder with its stem (all its images
    are that LR's references).
    """
    for key, value in (("lr", lr), ("out", out)):
        if not str(value).strip():
            raise ConfigError(f"{key}: empty; expected the path of an image file or a folder")
    lr, out = Path(lr), Path(out)
    if lr.is_dir():
        lr_images = list_images(lr)
        if not lr_images:
            raise FileNotFoundError(f"lr: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder {lr}")
        if out.is_file():
            raise ConfigError(f"out: {out} is a file; with a folder of LR images, out must be a folder")
        if out.resolve() == lr.resolve():
            raise ConfigError(f"out: {out} is the lr folder; write the SR images to another folder")
        require_unique_stems(lr_images, "lr")
        outputs = [out / f"{path.stem}.png" for path in lr_images]
    elif lr.is_file():
        lr_images = [lr]
        if out.is_dir() or not out.suffix:
            outputs = [out / f"{lr.stem}.png"]
        elif out.suffix.lower() in IMAGE_SUFFIXES:
            outputs = [out]
        else:
            raise ConfigError(f"out: {out} must end with one of {', '.join(IMAGE_SUFFIXES)}, or be a folder")
        if outputs[0].resolve() == lr.resolve():
            raise ConfigError(f"out: {outputs[0]} would overwrite the LR image lr={lr}")
    else:
        raise FileNotFoundError(f"lr: no image file or folder at {lr}")
    refs = _match_references(lr_images, ref if isinstance(ref, str | Path) else [str(path) for path in ref])
    return [InferenceJob(*job) for job in zip(lr_images, refs, outputs, strict=True)]


def _match_references(lr_images: Sequence[Path], ref: str | Path | list[str]) -> list[tuple[Path, ...]]:
    if isinstance(ref, list) or "," in str(ref):
        parts = ref if isinstance(ref, list) else str(ref).split(",")
        if not parts or not all(str(part).strip() for part in parts):
            problem = "has an empty entry" if parts else "names no reference"
            raise ConfigError(
                f"ref: {ref!r} {problem}; expected an image file, a folder, or a list of image files"
            )
        files = tuple(Path(str(part).strip()) for part in parts)
        missing = [str(path) for path in files if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"ref: no image file at {', '.join(missing)}")
        return [files] * len(lr_images)
    if not str(ref).strip():  # Path("") is the current folder: never a reference by accident
        raise ConfigError("ref: empty; expected an image file, a folder, or a list of image files")
    folder = Path(ref)
    if folder.is_file():
        return [(folder,)] * len(lr_images)
    if not folder.is_dir():
        raise FileNotFoundError(f"ref: no image file or folder at {folder}")
    references = list_images(folder)
    require_unique_stems(references, "ref")
    by_stem: dict[str, tuple[Path, ...]] = {path.stem: (path,) for path in references}
    for subfolder in sorted(path for path in folder.iterdir() if path.is_dir()):
        images = tuple(list_images(subfolder))
        if images and subfolder.name not in by_stem:
            by_stem[subfolder.name] = images
    missing = [path.name for path in lr_images if path.stem not in by_stem]
    if missing:
        shown = ", ".join(missing[:10]) + (f" ... and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise FileNotFoundError(
            f"ref: the folder {folder} has no reference named like the LR image(s) {shown}; expected per LR "
            "image an image with its stem, or a subfolder with its stem holding its references (or give ref "
            "one image, or comma-separated images, for all)"
        )
    return [by_stem[path.stem] for path in lr_images]


def attention_path(out: Path) -> Path:
    """Where the attention picture of the SR at ``out`` goes: ``<stem>_attention.png`` beside it."""
    return out.with_name(f"{out.stem}{ATTENTION_SUFFIX}.png")


def check_image_sizes(jobs: Sequence[InferenceJob]) -> list[tuple[tuple[int, int], list[tuple[int, int]]]]:
    """Fails before any work for images that do not decode whole (each is decoded, not only its
    header), references under 4x4 and outputs that cannot be created; returns per job the LR size and
    the reference sizes as the generator sees them ((height, width), references cropped to multiples
    of 4)."""
    reader = RGBImageReader("infer")
    decoded: dict[Path, tuple[int, int]] = {}

    def size(path: Path) -> tuple[int, int]:
        if path not in decoded:
            decoded[path] = reader.read(path).size
        return decoded[path]

    sizes = []
    for job in jobs:
        check_output_folder(job.out.parent, "out")
        width, height = size(job.lr)
        ref_sizes = []
        for path in job.refs:
            ref_width, ref_height = size(path)
            if ref_width < SCALE or ref_height < SCALE:
                raise ImageError(
                    f"{path}: reference is {ref_width}x{ref_height} px; expected at least {SCALE}x{SCALE}"
                )
            ref_sizes.append((ref_height // SCALE * SCALE, ref_width // SCALE * SCALE))
        sizes.append(((height, width), ref_sizes))
    return sizes


def check_memory(
    jobs: Sequence[InferenceJob],
    sizes: Sequence[tuple[tuple[int, int], list[tuple[int, int]]]],
    generator: nn.Module,
    max_memory: int | None,
    halo: int = DEFAULT_HALO,
) -> None:
    """Fails before any work for a job that cannot run within ``max_memory`` bytes (its references'
    search features alone do not fit), naming its files and the budget (TTSR only: another generator
    runs its whole forward)."""
    if not isinstance(generator, TTSRGenerator):
        return
    for job, (lr_size, ref_sizes) in zip(jobs, sizes, strict=True):
        try:
            plan_forward(generator, lr_size, ref_sizes, max_memory, halo=halo)
        except MemoryBudgetError as exc:
            files = ", ".join(str(path) for path in (job.lr, *job.refs))
            raise ImageError(f"{files}: {exc} (max_memory, see conf/infer.yaml)") from exc


# ---------------------------------------------------------------------------------------------- model
class GeneratorInputs(NamedTuple):
    """The generator's four inputs, batch of one, float32 in [-1, 1]: lr (1, 3, h, w), lr_up
    (1, 3, 4h, 4w), ref and ref_down_up (1, 3, H, W) with H, W multiples of 4, or lists of those
    (one per reference) with several references."""

    lr: torch.Tensor
    lr_up: torch.Tensor
    ref: torch.Tensor | list[torch.Tensor]
    ref_down_up: torch.Tensor | list[torch.Tensor]


def prepare_inputs(lr: Image.Image, refs: Sequence[tuple[Image.Image, Path]]) -> GeneratorInputs:
    """The official demo's preprocessing of an RGB LR image and its references (module docstring)."""
    lr_up = bicubic_resize(lr, SCALE * lr.width, SCALE * lr.height)
    cropped = [crop_to_multiple_of_scale(ref, path, "reference") for ref, path in refs]
    ref_tensors = [to_tensor(ref).unsqueeze(0) for ref in cropped]
    down_up_tensors = [to_tensor(down_up(ref)).unsqueeze(0) for ref in cropped]
    lr_tensor, lr_up_tensor = to_tensor(lr).unsqueeze(0), to_tensor(lr_up).unsqueeze(0)
    if len(refs) == 1:
        return GeneratorInputs(lr_tensor, lr_up_tensor, ref_tensors[0], down_up_tensors[0])
    return GeneratorInputs(lr_tensor, lr_up_tensor, ref_tensors, down_up_tensors)


def plan_inference(
    generator: nn.Module, inputs: GeneratorInputs, max_memory: int | None, halo: int = DEFAULT_HALO
) -> ForwardPlan | None:
    """How TTSR's forward pass of ``inputs`` runs within ``max_memory`` bytes (None: untiled), tiles
    with ``halo`` LR pixels of context; None for another generator (its whole forward)."""
    if not isinstance(generator, TTSRGenerator):
        return None
    return plan_for_inputs(generator, inputs.lr, inputs.ref, max_memory, halo)


def super_resolve(
    generator: nn.Module, inputs: GeneratorInputs, device: torch.device, plan: ForwardPlan | None = None
) -> GeneratorOutput:
    """One forward pass under ``torch.inference_mode`` (no autograd state is kept), as ``plan`` says
    (:func:`plan_inference`; None: untiled). TTSR's output has no textures; another generator's
    output is its forward's."""

    def to_device(value: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        return value.to(device) if isinstance(value, torch.Tensor) else [image.to(device) for image in value]

    plan = plan or plan_inference(generator, inputs, None)
    with torch.inference_mode():
        lr, lr_up, ref, ref_down_up = (to_device(value) for value in inputs)
        assert isinstance(lr, torch.Tensor) and isinstance(lr_up, torch.Tensor)
        if plan is None or not isinstance(generator, TTSRGenerator):
            return generator(lr, lr_up, ref, ref_down_up)
        return budgeted_forward(generator, lr, lr_up, ref, ref_down_up, plan)


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; errors name ``device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {name!r}") from exc
    if device.type not in ("cpu", "cuda"):  # meta, mps, ...: no pixels come back, or untested
        raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name}: CUDA is not available on this machine; use device=cpu")
    return device


def run_jobs(
    generator: nn.Module,
    jobs: Sequence[InferenceJob],
    device: torch.device,
    save_attention: bool = False,
    progress: bool = True,
    max_memory: int | None = None,
    halo: int = DEFAULT_HALO,
) -> list[Path]:
    """Super-resolves every job within ``max_memory`` bytes each (None: untiled; tiles with ``halo``
    LR pixels of context), writing the SR (and its attention picture); returns the files written. The
    first untiled and the first tiled plan are logged."""
    generator = generator.to(device).eval()
    if save_attention and getattr(generator, "search_transfer", None) is None:
        how = "use_hard_attention=false" if isinstance(generator, TTSRGenerator) else type(generator).__name__
        log.warning("save_attention: this generator has no texture transfer (%s); no maps", how)
        save_attention = False
    reader = RGBImageReader("infer")
    written: list[Path] = []
    logged: set[bool] = set()  # tiled or not: each kind of plan is logged once
    for job in tqdm(jobs, desc="super-resolving", unit="image", disable=not progress):
        inputs = prepare_inputs(reader.read(job.lr), [(reader.read(path), path) for path in job.refs])
        plan = plan_inference(generator, inputs, max_memory, halo)
        if plan is not None and plan.tiled not in logged:
            logged.add(plan.tiled)
            log.info("%s: %s", job.lr.name, plan.describe())
        output = super_resolve(generator, inputs, device, plan)
        save_image(Image.fromarray(to_uint8_image(output.sr[0])), job.out)
        written.append(job.out)
        if save_attention:
            assert output.soft_attention is not None and output.hard_index is not None
            if isinstance(inputs.ref, torch.Tensor):
                panel = attention_panel(
                    output.sr[0], inputs.ref[0], output.soft_attention[0], output.hard_index[0]
                )
            else:
                refs = [image[0] for image in inputs.ref]
                panel = reference_choice_panel(
                    output.sr[0], refs, output.soft_attention[0], output.hard_index[0]
                )
            save_image(Image.fromarray(panel), attention_path(job.out))
            written.append(attention_path(job.out))
    return written


def infer(cfg: DictConfig) -> list[Path]:
    """The whole command: check every input, load the generator, super-resolve; returns the files written."""
    try:
        memory_setting = parse_memory_setting(cfg.max_memory)
        halo = parse_halo(cfg.halo)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    ref = cfg.ref if isinstance(cfg.ref, str) else list(cfg.ref or [])
    jobs = plan_jobs(cfg.lr, ref, cfg.out)
    sizes = check_image_sizes(jobs)
    remove_unfinished_writes(job.out.parent for job in jobs)
    device = resolve_device(str(cfg.device))
    if cfg.search_transfer not in SEARCH_TRANSFERS:
        raise ConfigError(
            f"search_transfer: expected one of {sorted(SEARCH_TRANSFERS)}, got {cfg.search_transfer!r}"
        )
    if cfg.relevance_kernel not in RELEVANCE_KERNELS:
        raise ConfigError(
            f"relevance_kernel: expected one of {list(RELEVANCE_KERNELS)}, got {cfg.relevance_kernel!r}"
        )
    generator: nn.Module
    if cfg.ckpt is None:
        generator = random_generator(cfg.search_transfer, cfg.relevance_kernel)
    else:
        generator, description, _ = load_generator(
            cfg.ckpt, cfg.search_transfer, relevance_kernel=cfg.relevance_kernel
        )
        log.info("ckpt %s: %s", cfg.ckpt, description)
    max_memory = memory_budget(memory_setting, device)
    if memory_setting == "auto" and max_memory is not None:
        log.info("max_memory=auto: %s of memory for each image's forward pass", format_bytes(max_memory))
    check_memory(jobs, sizes, generator.to(device), max_memory, halo)
    written = run_jobs(
        generator, jobs, device, save_attention=bool(cfg.save_attention), max_memory=max_memory, halo=halo
    )
    log.info("wrote %d file(s), the first %s", len(written), written[0])
    return written


main = hydra_entry_point(infer, "infer")


if __name__ == "__main__":
    main()
