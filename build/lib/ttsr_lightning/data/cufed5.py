"""CUFED5 test set (SRNTT): 126 groups of an HR image and five references of decreasing similarity.

Layout (``root`` is the folder holding the images, e.g. ``<data_dir>/CUFED/test/CUFED5``)::

    root/NNN_0.png          HR input of group NNN (000 ... 125 in the real set)
    root/NNN_1.png ... _5   its references; _1 is the most similar (level L1), _5 the least

Every group must have all six files, whatever level is evaluated; any other image file in the folder
is an error (it would be a misnamed group member).

Reference levels (``ref_level``):
- ``1`` ... ``5``: the file ``NNN_<level>`` (the official evaluation uses level 1 only).
- ``"lr"``: the LR input as its own reference (the "LR" row of the paper's reference-similarity
  table); see ``eval_dataset.py`` for the exact construction.
- ``"stitched"``: the authors' protocol for the paper's main CUFED5 numbers (see
  https://github.com/researchmm/TTSR/issues/3 and .../54): each of the five references pasted,
  unresized, at the top-left of a black ``stitch_canvas`` x ``stitch_canvas`` canvas (500 by
  default), the five canvases stacked vertically (``_1`` on top) into one (5 * canvas) x canvas
  reference; that composite then goes through the ordinary reference
  preprocessing (its ``ref_down_up`` is the composite bicubic /4 then x4). A reference larger than the
  canvas is an error naming the file. ``stitch_padding="replicate_centred"`` is MASA-SR's variant
  (``TestSet_multi``): each reference centred on its canvas (512 there), the border replicating its
  edge pixels (``cv2.copyMakeBorder(..., BORDER_REPLICATE)``) instead of black.
- ``"all5"``: the five references as a list, searched all at once by the generator (native
  multi-reference: no canvas, no padding; memory linear in their total area).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from ttsr_lightning.data.errors import DatasetLayoutError, ImageError
from ttsr_lightning.data.eval_dataset import LR_REFERENCE, EvalDataset, EvalItem
from ttsr_lightning.data.image_io import list_images, require_folder
from ttsr_lightning.data.preprocessing import SCALE

DATASET_NAME = "CUFED5"
REFERENCE_LEVELS = (1, 2, 3, 4, 5)
_MEMBER = re.compile(r"^(?P<group>.+)_(?P<member>[0-5])$")


STITCH_PADDINGS = ("black_top_left", "replicate_centred")


def parse_ref_level(ref_level: int | str) -> int | str:
    """1..5, ``"lr"``, ``"stitched"`` or ``"all5"``; ValueError naming the accepted values otherwise."""
    if isinstance(ref_level, str) and ref_level.lower() in ("lr", "stitched", "all5"):
        return ref_level.lower()
    if isinstance(ref_level, str) and ref_level.isdigit():
        ref_level = int(ref_level)
    if isinstance(ref_level, int) and not isinstance(ref_level, bool) and ref_level in REFERENCE_LEVELS:
        return ref_level
    raise ValueError(
        f"CUFED5 ref_level must be one of 1, 2, 3, 4, 5, 'lr', 'stitched', 'all5'; got {ref_level!r}"
    )


def find_cufed5_groups(root: Path) -> dict[str, dict[int, Path]]:
    """Group id -> {member 0..5: path}, sorted by group id; DatasetLayoutError listing every problem."""
    require_folder(root, DATASET_NAME, "the CUFED5 folder of NNN_0.png ... NNN_5.png")
    groups: dict[str, dict[int, Path]] = defaultdict(dict)
    problems = []
    for path in list_images(root):
        match = _MEMBER.match(path.stem)
        if match is None:
            problems.append(f"{path}: unexpected file; expected names NNN_0 (HR) ... NNN_5 (references)")
            continue
        group, member = match["group"], int(match["member"])
        if member in groups[group]:
            problems.append(f"{path}: duplicate of {groups[group][member]}")
        groups[group][member] = path
    if not groups and not problems:
        problems.append(f"{root}: no images found; expected NNN_0.png ... NNN_5.png")
    for group, members in sorted(groups.items()):
        absent = [f"{group}_{k}" for k in range(6) if k not in members]
        if absent:
            problems.append(
                f"{root}: group {group} lacks {', '.join(absent)}; expected NNN_0 (HR) and NNN_1 ... NNN_5"
            )
    if problems:
        raise DatasetLayoutError(DATASET_NAME, problems)
    return dict(sorted(groups.items()))


class CUFED5Dataset(EvalDataset):
    """CUFED5 with the references of one level, the LR as reference, or all five stitched.

    Args:
        root: folder holding ``NNN_0.png`` ... ``NNN_5.png``.
        ref_level: 1..5, ``"lr"``, ``"stitched"`` or ``"all5"``.
        stitch_canvas: side of the square canvas of each reference when stitched (multiple of 4).
        stitch_padding: ``"black_top_left"`` (TTSR's authors) or ``"replicate_centred"`` (MASA-SR).
    """

    def __init__(
        self,
        root: str | Path,
        ref_level: int | str = 1,
        stitch_canvas: int = 500,
        stitch_padding: str = "black_top_left",
    ) -> None:
        level = parse_ref_level(ref_level)
        if stitch_canvas <= 0 or stitch_canvas % SCALE:
            raise ValueError(f"stitch_canvas must be a positive multiple of {SCALE}, got {stitch_canvas}")
        if stitch_padding not in STITCH_PADDINGS:
            raise ValueError(f"stitch_padding must be one of {list(STITCH_PADDINGS)}, got {stitch_padding!r}")
        self.root = Path(root)
        self.ref_level = level
        self.stitch_canvas = stitch_canvas
        self.stitch_padding = stitch_padding
        items = []
        for members in find_cufed5_groups(self.root).values():
            hr = members[0]
            if level == "lr":
                refs: tuple[Path, ...] = ()
                ref_name = LR_REFERENCE
            elif level in ("stitched", "all5"):
                refs = tuple(members[k] for k in REFERENCE_LEVELS)
                ref_name = "+".join(path.stem for path in refs)
            else:
                refs = (members[int(level)],)
                ref_name = refs[0].stem
            items.append(EvalItem(hr.stem, hr, refs, ref_name))
        stitched = (
            f"stitched({stitch_canvas})"
            if stitch_padding == "black_top_left"
            else f"stitched_masa({stitch_canvas})"
        )
        policy = {"lr": "LR", "stitched": stitched, "all5": "all5"}.get(str(level), f"L{level}")
        super().__init__(DATASET_NAME, items, policy, multi_reference=level == "all5")

    def load_reference(self, item: EvalItem, lr: Image.Image) -> Image.Image:
        """The stitched composite for level ``"stitched"``; the level's file or the LR otherwise."""
        if self.ref_level != "stitched":
            return super().load_reference(item, lr)
        side = self.stitch_canvas
        composite = Image.new("RGB", (side, side * len(item.refs)))  # black
        for row, path in enumerate(item.refs):
            ref = self._reader.read(path)
            if ref.width > side or ref.height > side:
                raise ImageError(
                    f"{path}: reference is {ref.width}x{ref.height} px; expected at most {side}x{side} "
                    "to stitch (raise stitch_canvas)"
                )
            if self.stitch_padding == "replicate_centred":
                composite.paste(_replicate_centred(ref, side), (0, row * side))
            else:
                composite.paste(ref, (0, row * side))
        return composite


def _replicate_centred(image: Image.Image, side: int) -> Image.Image:
    """``image`` centred on a side x side canvas whose border repeats its edge pixels (MASA-SR's
    ``cv2.copyMakeBorder(..., BORDER_REPLICATE)`` with top = (side - h) // 2, left = (side - w) // 2)."""
    pixels = np.asarray(image)
    top, left = (side - image.height) // 2, (side - image.width) // 2
    pad = ((top, side - image.height - top), (left, side - image.width - left), (0, 0))
    return Image.fromarray(np.pad(pixels, pad, mode="edge"))
