"""``python -m ttsr_lightning.score sr=DIR hr=DIR protocol=NAME out=FILE.csv``: any method's saved SR
images scored under any protocol (conf/protocol/), against HR images paired by file stem.

    python -m ttsr_lightning.score sr=results/masa hr=data/CUFED/test/CUFED5 out=masa.csv
    python -m ttsr_lightning.score sr=results/c2 hr=data/CUFED/test/CUFED5 protocol=basicsr out=c2.csv
    python -m ttsr_lightning.score sr=results/ttsr hr=data/CUFED/test/CUFED5 protocol=all out=ttsr.csv

Every image of ``sr`` needs an HR image of the same stem in ``hr`` (other HR files, e.g. CUFED5's
references, are ignored). The values are each convention's own (``tests/test_protocols.py`` checks them
against the codebases' metric code): ``protocol=ttsr_official`` is the official TTSR evaluation,
``basicsr`` BasicSR / C2-Matching / DATSR, ``mmagic`` mmagic, ``masa`` MASA-SR. An HR image up to 3
pixels larger than its SR (HR sides not multiples of 4) is cropped top-left to the SR's size, as every
one of these pipelines crops it before degrading; any other size difference is an error naming both
files.

``lpips`` (auto, true, false or a path; see :mod:`ttsr_lightning.models.lpips`) adds each pair's LPIPS
(AlexNet v0.1 on the 8-bit RGB images, whole, lower is better; the same for every protocol) when its
weights are found; without them the column is absent and the summary's ``lpips`` says why.

Writes ``out`` (an existing one only with ``overwrite=true``): one row per image and protocol
(``image``, ``protocol``, ``psnr``, ``ssim``, ``lpips`` when measured, the ``width`` and ``height``
measured, ``hr_cropped``, ``sr_file``, ``hr_file``), ``<out stem>.summary.json`` (the mean per protocol,
with each protocol's source and what LPIPS used; strict JSON: an infinite PSNR, an SR identical to its
HR, is ``null`` with a note) and prints the means as a Markdown table. SR images sharing a stem
(``a.png`` and ``a.jpg``) and an SR folder scored against itself are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ttsr_lightning.cli import hydra_entry_point
from ttsr_lightning.data.errors import ImageError
from ttsr_lightning.data.image_io import IMAGE_SUFFIXES, RGBImageReader, list_images, require_unique_stems
from ttsr_lightning.data.preprocessing import SCALE
from ttsr_lightning.errors import ConfigError
from ttsr_lightning.files import check_new_output, remove_unfinished_writes, write_csv, write_json
from ttsr_lightning.lpips_setting import load_lpips
from ttsr_lightning.markdown import markdown_table
from ttsr_lightning.models.lpips import LPIPS
from ttsr_lightning.protocols import Protocol, protocols_from_config
from ttsr_lightning.result_files import means_over_images


def pair_images(sr_dir: Path, hr_dir: Path) -> list[tuple[Path, Path]]:
    """(SR file, HR file) for every SR image, by stem; errors name the folder and what is missing."""
    for key, folder in (("sr", sr_dir), ("hr", hr_dir)):
        if not folder.is_dir():
            raise ConfigError(
                f"{key}: no folder at {folder}; expected a folder of images ({', '.join(IMAGE_SUFFIXES)})"
            )
    if sr_dir.resolve() == hr_dir.resolve():
        raise ConfigError(f"sr: {sr_dir} is the hr folder; score the SR images against another folder")
    sr_images = list_images(sr_dir)
    if not sr_images:
        raise ConfigError(f"sr: no images ({', '.join(IMAGE_SUFFIXES)}) in {sr_dir}")
    require_unique_stems(sr_images, "sr")
    hr_images = list_images(hr_dir)
    require_unique_stems(hr_images, "hr")
    hr_by_stem = {path.stem: path for path in hr_images}
    missing = [path.name for path in sr_images if path.stem not in hr_by_stem]
    if missing:
        shown = ", ".join(missing[:5]) + (f" ... and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ConfigError(f"hr: {hr_dir} has no image named like the SR image(s) {shown}")
    return [(path, hr_by_stem[path.stem]) for path in sr_images]


def _pixels(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float64 on [0, 255]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0).to(torch.float64)


def score_pair(
    sr_file: Path,
    hr_file: Path,
    protocols: list[Protocol],
    reader: RGBImageReader,
    lpips: LPIPS | None = None,
) -> list[dict[str, Any]]:
    """One row per protocol for an SR image and its HR (with their LPIPS when ``lpips`` is given)."""
    sr, hr = np.asarray(reader.read(sr_file)), np.asarray(reader.read(hr_file))
    (sr_height, sr_width), (hr_height, hr_width) = sr.shape[:2], hr.shape[:2]
    excess = (hr_height - sr_height, hr_width - sr_width)
    if not all(0 <= extra < SCALE for extra in excess):
        raise ImageError(
            f"{sr_file}: SR is {sr_width}x{sr_height} px but {hr_file} is {hr_width}x{hr_height}; "
            f"expected the same size, or an HR at most {SCALE - 1} px larger (cropped top-left to a "
            f"multiple of {SCALE})"
        )
    sr_pixels, hr_pixels = _pixels(sr), _pixels(hr[:sr_height, :sr_width])
    lpips_value: dict[str, float] = {}
    if lpips is not None:
        with torch.inference_mode():
            lpips_value["lpips"] = float(lpips(sr_pixels / 127.5 - 1.0, hr_pixels / 127.5 - 1.0))
    rows = []
    for protocol in protocols:
        psnr, ssim = protocol.measure_pixels(sr_pixels, hr_pixels)
        rows.append(
            {
                "image": sr_file.stem,
                "protocol": protocol.name,
                "psnr": float(psnr),
                "ssim": float(ssim),
                **lpips_value,
                "width": sr_width,
                "height": sr_height,
                "hr_cropped": excess != (0, 0),
                "sr_file": str(sr_file),
                "hr_file": str(hr_file),
            }
        )
    return rows


def summarise(rows: list[dict[str, Any]], protocols: list[Protocol]) -> list[dict[str, Any]]:
    """The mean PSNR / SSIM (and LPIPS when measured) per protocol (:func:`means_over_images`), in the
    order of ``protocols``, with its description and source."""
    measures = ("psnr", "ssim", "lpips") if "lpips" in rows[0] else ("psnr", "ssim")
    means = {row["protocol"]: row for row in means_over_images(rows, ("protocol",), measures)}
    return [
        {**means[protocol.name], "description": protocol.summary(), "source": protocol.source}
        for protocol in protocols
    ]


def score(cfg: DictConfig) -> list[dict[str, Any]]:
    """The whole command; returns the per-protocol summary."""
    if not str(cfg.out).strip():
        raise ConfigError("out: empty; expected the path of a .csv file")
    out = Path(cfg.out)
    if out.suffix.lower() != ".csv":
        raise ConfigError(f"out: {out} must end with .csv")
    summary_file = out.with_name(f"{out.stem}.summary.json")
    check_new_output([out, summary_file], "out", bool(cfg.overwrite))
    remove_unfinished_writes([out.parent])
    protocols = protocols_from_config(OmegaConf.to_container(cfg.protocol, resolve=True))  # type: ignore[arg-type]
    pairs = pair_images(Path(cfg.sr), Path(cfg.hr))
    lpips, lpips_description = load_lpips(cfg.lpips)
    reader = RGBImageReader("score")
    rows = []
    for sr_file, hr_file in tqdm(pairs, desc="scoring", unit="image"):
        rows += score_pair(sr_file, hr_file, protocols, reader, lpips)
    write_csv(out, rows)
    summary = summarise(rows, protocols)
    document = {
        "sr": str(Path(cfg.sr).resolve()),
        "hr": str(Path(cfg.hr).resolve()),
        "lpips": lpips_description,
        "protocols": summary,
    }
    write_json(summary_file, document)  # an SR equal to its HR (infinite PSNR) becomes null, with a note
    with_lpips = lpips is not None
    header = ("protocol", "images", "PSNR", "SSIM", *(["LPIPS ↓"] if with_lpips else []), "what")
    cells = [
        (
            row["protocol"],
            row["images"],
            f"{row['psnr']:.4f}",
            f"{row['ssim']:.4f}",
            *([f"{row['lpips']:.4f}"] if with_lpips else []),
            row["description"],
        )
        for row in summary
    ]
    print(markdown_table(header, cells, "l" + "r" * (len(header) - 2) + "l"))
    print(f"LPIPS: {lpips_description}")
    print(f"wrote {out} and {summary_file}")
    return summary


main = hydra_entry_point(score, "score")

if __name__ == "__main__":
    main()
