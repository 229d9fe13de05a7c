"""WR-SR (C2-Matching, Jiang et al., CVPR 2021): 80 web images, each with one reference found by
Google image search (the "Webly-Referenced SR" benchmark).

Layout (``root``, e.g. ``<data_dir>/WR-SR``; the release's folders, as C2-Matching's
``datasets/DATASETS.md`` lays them out and ``datasets/WR-SR_pairs.txt`` pairs them)::

    root/input/001.png ... 080.png          80 HR images
    root/ref/001_ref.png ... 080_ref.png    the reference of each

Source: https://drive.google.com/drive/folders/16UKRu-7jgCYcndOlGYBmo5Pp0_Mq71hP (C2-Matching's README
also links the folder 1Pt7blJA2cK4oQ6yWB9tcHerZ4pwICmxp). C2-Matching evaluates it with its CUFED5
protocol (``protocol=basicsr`` here: BT.601 Y, 4-pixel border crop). One difference is not reproduced:
C2-Matching zero-pads the input and the reference to a common size (and makes the LR from the padded
input) when their sizes differ; here, as for every set, the reference keeps its own size.
"""

from __future__ import annotations

from pathlib import Path

from ttsr_lightning.data.errors import DatasetLayoutError
from ttsr_lightning.data.eval_dataset import EvalDataset, EvalItem
from ttsr_lightning.data.image_io import list_images, require_folder

DATASET_NAME = "WR-SR"
REFERENCE_SUFFIX = "_ref"


class WRSRDataset(EvalDataset):
    """WR-SR: ``input/NNN.*`` with its reference ``ref/NNN_ref.*``.

    Args:
        root: folder holding ``input/`` and ``ref/``.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        input_dir, ref_dir = self.root / "input", self.root / "ref"
        require_folder(self.root, DATASET_NAME, "the WR-SR folder holding input/ and ref/")
        require_folder(input_dir, DATASET_NAME, "the 80 HR images NNN.png")
        require_folder(ref_dir, DATASET_NAME, "the 80 references NNN_ref.png")
        images = list_images(input_dir)
        references = {path.stem: path for path in list_images(ref_dir)}
        problems = [] if images else [f"{input_dir}: no images found; expected 001.png ... 080.png"]
        items = []
        for hr in images:
            ref = references.pop(f"{hr.stem}{REFERENCE_SUFFIX}", None)
            if ref is None:
                problems.append(f"{ref_dir}: no {hr.stem}{REFERENCE_SUFFIX}.png for {hr.name}")
                continue
            items.append(EvalItem(hr.stem, hr, (ref,), ref.stem))
        problems += [
            f"{path}: a reference without its input {name.removesuffix(REFERENCE_SUFFIX)}.png"
            for name, path in sorted(references.items())
        ]
        if problems:
            raise DatasetLayoutError(DATASET_NAME, problems)
        super().__init__(DATASET_NAME, items, "paired")
