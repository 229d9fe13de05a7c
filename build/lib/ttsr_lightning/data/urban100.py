"""Urban100 (Huang et al., CVPR 2015): 100 urban photographs, each its own reference.

Layout: a folder of the 100 HR images (``root``, e.g. ``<data_dir>/Urban100``), selected by ``pattern``:
``*.png`` for a plain folder of HR images (e.g. BasicSR's ``Urban100/GTmod12``), or ``*_HR.png`` to
read the HR files straight out of the SelfExSR archive's ``image_SRF_4/`` folder.

Reference: the LR input itself (the TTSR authors' protocol,
https://github.com/researchmm/TTSR/issues/18); see ``eval_dataset.py``
for the exact construction.
"""

from __future__ import annotations

from pathlib import Path

from ttsr_lightning.data.eval_dataset import LR_REFERENCE, EvalDataset, EvalItem
from ttsr_lightning.data.image_io import find_images

DATASET_NAME = "Urban100"


class Urban100Dataset(EvalDataset):
    """Urban100 HR images, the LR input as reference.

    Args:
        root: folder holding the HR images.
        pattern: glob selecting the HR images inside ``root``.
    """

    def __init__(self, root: str | Path, pattern: str = "*.png") -> None:
        self.root = Path(root)
        self.pattern = pattern
        images = find_images(self.root, pattern, DATASET_NAME, "the Urban100 HR images")
        items = [EvalItem(hr.stem, hr, (), LR_REFERENCE) for hr in images]
        super().__init__(DATASET_NAME, items, "LR")
