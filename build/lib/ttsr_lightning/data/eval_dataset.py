"""Evaluation datasets: whole test images with one reference each, as the official test loader.

Every test set (CUFED5, Sun80, Urban100, Manga109, held-out CUFED pairs) is a list of EvalItem, one
per HR image, plus a reference policy that says where its reference comes from. An item
(official ``TestSet``): ``hr`` cropped top-left to multiples of 4; ``lr`` = PIL bicubic /4;
``lr_up`` = ``lr`` bicubic x4; ``ref`` cropped top-left to multiples of 4; ``ref_down_up`` = ``ref``
bicubic /4 then x4. Whole images, no padding: serve them with batch size 1.

"LR as reference" (CUFED5 level ``lr``, Urban100, Manga109 ``reference: lr``): ``ref`` is the LR
input itself at its own size (h, w), cropped top-left to multiples of 4, and ``ref_down_up`` is that
image bicubic /4 then x4. The network then searches the LR for textures at a quarter of their
scale, the cross-scale self-similarity that makes Urban100 special; this is what MASA-SR's released
Urban100 loader feeds as "LR as reference". (The bicubic LR-up as reference would hand the network
no detail that ``lr_up`` does not already have.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image
from torch.utils.data import Dataset

from ttsr_lightning.data.image_io import RGBImageReader
from ttsr_lightning.data.preprocessing import crop_to_multiple_of_scale, degrade, down_up, to_tensor

LR_REFERENCE = "LR"


class EvalItem(NamedTuple):
    """One test image and where its reference comes from.

    ``refs``: empty = the LR input is the reference; one path = that image; several = all of them,
    as a list of references (``multi_reference``) or stitched into one (datasets that stitch
    override ``load_reference``).
    """

    name: str
    hr: Path
    refs: tuple[Path, ...]
    ref_name: str


class EvalDataset(Dataset[dict[str, Any]]):
    """Test images preprocessed as the official test loader.

    Each item: ``lr`` (3, H/4, W/4), ``lr_up`` and ``hr`` (3, H, W), ``ref`` and ``ref_down_up``
    (3, Hr, Wr), float32 in [-1, 1], H, W, Hr, Wr multiples of 4; ``name`` (the HR image's stem),
    ``ref_name`` (the reference's stem, or ``"LR"``), ``index`` (its position in the set, so results
    gathered from several ranks sort back into set order) and ``reference_policy``.

    With ``multi_reference``, ``ref`` and ``ref_down_up`` are lists with one (3, Hi, Wi) tensor per
    reference file of the item (each cropped to multiples of 4 and down-upsampled on its own), which
    the generator searches all at once; the DataLoader's collation keeps them a list of (1, 3, Hi, Wi).

    Args:
        dataset: name used in messages.
        items: the images, in evaluation order.
        reference_policy: how references were chosen, for logs (e.g. ``"L1"``, ``"random(seed=0)"``).
        multi_reference: serve every reference of an item as a list (see above).
    """

    def __init__(
        self, dataset: str, items: Sequence[EvalItem], reference_policy: str, multi_reference: bool = False
    ) -> None:
        self.dataset = dataset
        self.items = list(items)
        self.reference_policy = reference_policy
        self.multi_reference = multi_reference
        self._reader = RGBImageReader(dataset)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        hr = crop_to_multiple_of_scale(self._reader.read(item.hr), item.hr, "HR")
        lr, lr_up = degrade(hr)
        references: Any
        if self.multi_reference:
            refs = [
                crop_to_multiple_of_scale(self._reader.read(path), path, "reference") for path in item.refs
            ]
            references = ([to_tensor(ref) for ref in refs], [to_tensor(down_up(ref)) for ref in refs])
        else:
            ref_path, ref_role = (
                (item.refs[0], "reference") if item.refs else (item.hr, "LR (used as reference)")
            )
            ref = crop_to_multiple_of_scale(self.load_reference(item, lr), ref_path, ref_role)
            references = (to_tensor(ref), to_tensor(down_up(ref)))
        return {
            "lr": to_tensor(lr),
            "lr_up": to_tensor(lr_up),
            "hr": to_tensor(hr),
            "ref": references[0],
            "ref_down_up": references[1],
            "name": item.name,
            "ref_name": item.ref_name,
            "index": index,
            "reference_policy": self.reference_policy,
        }

    def load_reference(self, item: EvalItem, lr: Image.Image) -> Image.Image:
        """The reference image before the multiple-of-4 crop: the LR itself or the one reference file."""
        if not item.refs:
            return lr
        if len(item.refs) > 1:
            raise ValueError(f"{self.dataset}: {item.name} has {len(item.refs)} references; expected one")
        return self._reader.read(item.refs[0])

    def image_files(self) -> list[Path]:
        """Every file this dataset reads (for the preparation check)."""
        files = {item.hr for item in self.items} | {ref for item in self.items for ref in item.refs}
        return sorted(files)

    def __repr__(self) -> str:
        policy = self.reference_policy
        return f"{type(self).__name__}({self.dataset!r}, images={len(self)}, reference={policy!r})"
