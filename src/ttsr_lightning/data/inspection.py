"""Every image a run will read, decoded before the run starts: what the pre-flight and ``data.prepare``
check, from the datasets' own file lists.

:func:`image_requirements` lists the files of a training set or an evaluation set with the smallest size
each may have (a training HR must hold the training patch); :func:`decode_problems` decodes them all in
a pool of threads (Pillow decodes outside the GIL), with a progress bar, and returns one line per file
that cannot be used. Nothing is written.

``FULL_SIZES``: the item counts of the released datasets, for the note that a folder holds a subset.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from ttsr_lightning.config_paths import cores_up_to
from ttsr_lightning.data.cufed import CUFEDTrainDataset
from ttsr_lightning.data.errors import ImageError
from ttsr_lightning.data.eval_dataset import EvalDataset
from ttsr_lightning.data.image_io import RGBImageReader
from ttsr_lightning.data.preprocessing import SCALE

# a progress bar for this many images or more (a few seconds of decoding)
PROGRESS_BAR_FROM = 1000
# Items of the released datasets: CUFED training pairs, CUFED5 groups, test images.
FULL_SIZES = {"CUFED": 11871, "CUFED5": 126, "Sun80": 80, "Urban100": 100, "Manga109": 109, "WR-SR": 80}


class ImageRequirement(NamedTuple):
    """A file a run reads and the smallest size (width, height) it may have there."""

    path: Path
    min_width: int
    min_height: int
    role: str


def image_requirements(dataset: CUFEDTrainDataset | EvalDataset) -> list[ImageRequirement]:
    """The files ``dataset`` reads, each with its smallest usable size."""
    if isinstance(dataset, CUFEDTrainDataset):
        size = dataset.patch_size
        hr_role = f"HR (the training patch size is {size})"
        return [
            requirement
            for pair in dataset.pairs
            for requirement in (
                ImageRequirement(pair.input, size, size, hr_role),
                ImageRequirement(pair.ref, SCALE, SCALE, "reference"),
            )
        ]
    return [ImageRequirement(path, SCALE, SCALE, "image") for path in dataset.image_files()]


def decode_problems(
    requirements: Iterable[ImageRequirement], description: str = "images", workers: int | None = None
) -> list[str]:
    """Decodes every file once (the first requirement of a file that is listed twice wins), in
    ``workers`` threads (default: the CPU cores this process may use); one line per unusable file, in
    file order."""
    unique = {requirement.path: requirement for requirement in reversed(list(requirements))}
    ordered = [unique[path] for path in sorted(unique)]
    reader = RGBImageReader(description)

    def problem(requirement: ImageRequirement) -> str | None:
        try:
            image = reader.read(requirement.path)
        except ImageError as exc:
            return str(exc)
        width, height = image.size
        if width < requirement.min_width or height < requirement.min_height:
            return (
                f"{requirement.path}: {width}x{height} px; the {requirement.role} must be at least "
                f"{requirement.min_width}x{requirement.min_height}"
            )
        return None

    with ThreadPoolExecutor(max_workers=workers or available_cores()) as pool:
        found = tqdm(
            pool.map(problem, ordered),
            total=len(ordered),
            desc=f"decoding {description}",
            unit="image",
            disable=len(ordered) < PROGRESS_BAR_FROM,
        )
        return [line for line in found if line is not None]


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity, which a scheduler may narrow)."""
    return cores_up_to(1 << 30)


def subset_note(dataset: str, count: int, unit: str) -> str | None:
    """A note when a released dataset's folder holds another number of items than the release."""
    full = FULL_SIZES.get(dataset)
    if full is None or count == full:
        return None
    return (
        f"{dataset}: {count:,} {unit}; the released set has {full:,} (a subset, or an incomplete download?)"
    )
