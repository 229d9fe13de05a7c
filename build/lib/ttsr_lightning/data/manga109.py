"""Manga109 (Matsui et al.): 109 manga cover images; the reference policy is a configuration choice.

Layout: a folder of the 109 HR images (``root``, e.g. ``<data_dir>/Manga109``), selected by ``pattern``.

The paper says the reference is a random HR image of the same dataset; the authors' answer in
https://github.com/researchmm/TTSR/issues/18 says the LR input. Both are offered, and
``reference_policy`` records which one ran:
- ``"random_hr"`` (default): another image of the dataset, drawn uniformly from the other 108 by a
  generator seeded with (``seed``, image index);
- ``"lr"``: the LR input itself (construction in ``eval_dataset.py``).
"""

from __future__ import annotations

from pathlib import Path

from ttsr_lightning.data.errors import DatasetLayoutError
from ttsr_lightning.data.eval_dataset import LR_REFERENCE, EvalDataset, EvalItem
from ttsr_lightning.data.image_io import find_images
from ttsr_lightning.data.seeding import reference_generator

DATASET_NAME = "Manga109"
REFERENCES = ("random_hr", "lr")


class Manga109Dataset(EvalDataset):
    """Manga109 HR images with a random other HR image, or the LR input, as reference.

    Args:
        root: folder holding the HR images.
        reference: ``"random_hr"`` or ``"lr"``.
        pattern: glob selecting the HR images inside ``root``.
        seed: seed of the random pick (non-negative).
    """

    def __init__(
        self, root: str | Path, reference: str = "random_hr", pattern: str = "*.png", seed: int = 0
    ) -> None:
        if reference not in REFERENCES:
            raise ValueError(f"Manga109 reference must be one of {REFERENCES}, got {reference!r}")
        if seed < 0:
            raise ValueError(f"Manga109 seed must be >= 0, got {seed}")
        self.root = Path(root)
        self.reference = reference
        self.pattern = pattern
        self.seed = seed
        images = find_images(self.root, pattern, DATASET_NAME, "the Manga109 HR images")
        if reference == "lr":
            items = [EvalItem(hr.stem, hr, (), LR_REFERENCE) for hr in images]
            policy = "LR"
        else:
            if len(images) < 2:
                raise DatasetLayoutError(
                    DATASET_NAME, [f"{self.root}: one image only; reference 'random_hr' needs at least two"]
                )
            items = []
            for index, hr in enumerate(images):
                other = int(reference_generator(seed, index).integers(len(images) - 1))
                ref = images[other + (other >= index)]  # skip the image itself
                items.append(EvalItem(hr.stem, hr, (ref,), ref.stem))
            policy = f"random_hr(seed={seed})"
        super().__init__(DATASET_NAME, items, policy)
