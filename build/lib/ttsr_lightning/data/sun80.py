"""Sun80 (Sun and Hays, ICCP 2012): 80 natural images, each with about 20 web "scene match" references.

Layout (``root``, e.g. ``<data_dir>/Sun80``; the folder names of the original archive, which
MASA-SR and C2-Matching read as well)::

    root/Sun_Hays_SR_groundtruth/<image>.jpg              80 HR images
    root/Sun_Hays_SR_scenematches/<image>.jpg/*.jpg       that image's references (a folder per image,
                                                          named after the image file; a folder named
                                                          after the stem, <image>/, is accepted too)

References per image (``reference``):
- ``"random"`` (default): one, drawn uniformly from the image's sorted references by a generator
  seeded with (``seed``, image index), the authors' protocol
  (https://github.com/researchmm/TTSR/issues/19; MASA-SR draws one unseeded) made reproducible.
- an integer k: the k-th reference in sorted file-name order (0 = first) for every image.
- a mapping {image stem: reference file name}: a named reference per image (every image needs one).
- ``"all"``: every scene match, as a list the generator searches at once (native multi-reference), in
  sorted order while their total area stays within ``max_reference_pixels`` (memory-bounded: the
  search and the reference features grow linearly with it; the first reference is always kept).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ttsr_lightning.data.errors import DatasetLayoutError
from ttsr_lightning.data.eval_dataset import EvalDataset, EvalItem
from ttsr_lightning.data.image_io import image_size, list_images, require_folder
from ttsr_lightning.data.seeding import reference_generator

DATASET_NAME = "Sun80"
HR_FOLDER = "Sun_Hays_SR_groundtruth"
REFERENCE_FOLDER = "Sun_Hays_SR_scenematches"


class Sun80Dataset(EvalDataset):
    """Sun80 with one reference per image, picked at random (seeded), by rank, or by name.

    Args:
        root: folder holding ``Sun_Hays_SR_groundtruth/`` and ``Sun_Hays_SR_scenematches/``.
        reference: ``"random"``, a rank k (int), a mapping {image stem: reference file name}, or ``"all"``.
        seed: seed of the random pick (non-negative).
        max_reference_pixels: with ``"all"``, the most reference pixels per image (width x height summed).
    """

    def __init__(
        self,
        root: str | Path,
        reference: str | int | Mapping[str, str] = "random",
        seed: int = 0,
        max_reference_pixels: int = 16_000_000,
    ) -> None:
        if seed < 0:
            raise ValueError(f"Sun80 seed must be >= 0, got {seed}")
        if isinstance(reference, str) and reference not in ("random", "all"):
            raise ValueError(
                f"Sun80 reference must be 'random', 'all', a rank (int) or a mapping; got {reference!r}"
            )
        if max_reference_pixels < 1:
            raise ValueError(f"Sun80 max_reference_pixels must be >= 1, got {max_reference_pixels}")
        if isinstance(reference, int) and (isinstance(reference, bool) or reference < 0):
            raise ValueError(f"Sun80 reference rank must be an int >= 0, got {reference!r}")
        self.root = Path(root)
        hr_dir, ref_root = self.root / HR_FOLDER, self.root / REFERENCE_FOLDER
        require_folder(
            self.root, DATASET_NAME, f"the Sun80 folder holding {HR_FOLDER}/ and {REFERENCE_FOLDER}/"
        )
        require_folder(hr_dir, DATASET_NAME, "the 80 HR images")
        require_folder(ref_root, DATASET_NAME, "one folder of references per HR image")
        images = list_images(hr_dir)
        problems = [] if images else [f"{hr_dir}: no images found; expected the HR images"]
        items = []
        self.candidates: dict[str, list[Path]] = {}  # image stem -> all its references, sorted
        for index, hr in enumerate(images):
            folder = next((f for f in (ref_root / hr.name, ref_root / hr.stem) if f.is_dir()), None)
            if folder is None:
                problems.append(
                    f"{ref_root / hr.name}: folder not found; expected the references of {hr.name}"
                )
                continue
            refs = list_images(folder)
            if not refs:
                problems.append(f"{folder}: no images found; expected the references of {hr.name}")
                continue
            self.candidates[hr.stem] = refs
            if reference == "all":
                chosen = _within_pixel_budget(refs, max_reference_pixels)
                items.append(EvalItem(hr.stem, hr, chosen, f"{len(chosen)} of {len(refs)} scene matches"))
                continue
            try:
                ref = _pick_reference(reference, refs, folder, hr.stem, seed, index)
            except LookupError as exc:
                problems.append(str(exc))
                continue
            items.append(EvalItem(hr.stem, hr, (ref,), ref.stem))
        if problems:
            raise DatasetLayoutError(DATASET_NAME, problems)
        self.reference = reference
        self.seed = seed
        if isinstance(reference, Mapping):
            policy = "named"
        elif isinstance(reference, int):
            policy = f"rank {reference}"
        elif reference == "all":
            policy = f"all(<= {max_reference_pixels:,} px)"
        else:
            policy = f"random(seed={seed})"
        super().__init__(DATASET_NAME, items, policy, multi_reference=reference == "all")


def _within_pixel_budget(refs: list[Path], max_pixels: int) -> tuple[Path, ...]:
    """The sorted ``refs`` from the first while their summed area (read from the file headers) fits."""
    chosen: list[Path] = []
    total = 0
    for path in refs:
        width, height = image_size(path)
        area = width * height
        if chosen and total + area > max_pixels:
            break
        chosen.append(path)
        total += area
    return tuple(chosen)


def _pick_reference(
    reference: str | int | Mapping[str, str], refs: list[Path], folder: Path, stem: str, seed: int, index: int
) -> Path:
    """Image ``index``'s reference among its sorted ``refs``; LookupError saying what is missing."""
    if isinstance(reference, Mapping):
        named = reference.get(stem)
        if named is None or not (folder / named).is_file():
            raise LookupError(f"{folder}: reference {named!r} named for {stem} not found")
        return folder / named
    if isinstance(reference, int):
        if reference >= len(refs):
            raise LookupError(f"{folder}: has {len(refs)} references; expected at least {reference + 1}")
        return refs[reference]
    return refs[int(reference_generator(seed, index).integers(len(refs)))]
