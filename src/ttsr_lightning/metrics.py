"""Y-channel PSNR and SSIM exactly as the official TTSR evaluation (``utils.calc_psnr_and_ssim``).

The protocol, step by step (see OFFICIAL_CODE.md section 8):

1. images in [-1, 1] are mapped to [0, 255] with ``(x + 1) * 127.5`` in their own dtype and rounded
   half-to-even (``torch.round``), i.e. the uint8 values a saved PNG would hold (no clamping: the
   generator output is already clamped);
2. the luma is BT.601 "studio swing" (MATLAB ``rgb2ycbcr``): ``Y = (65.738 R + 129.057 G + 25.064 B) / 256``
   (+ 16 for SSIM; PSNR only sees differences), not rounded;
3. PSNR = ``-10 log10(mean(dY^2))`` with ``dY`` on the [0, 1] scale (peak 1), whole image;
4. SSIM: 11x11 Gaussian window (sigma 1.5), C1 = (0.01*255)^2, C2 = (0.03*255)^2, "valid" filtering
   (the map is 10 px smaller in each dimension, no padding), mean of the map.

``crop_border`` shaves that many pixels off every side before both measures (0 in the official code;
BasicSR/mmagic use the scale, 4). Everything after the rounding runs in float64; the official PSNR
runs in float32 and differs by < 1e-6 dB.

torchmetrics' SSIM pads instead of using the valid region and kornia's YCbCr is full-range, so
neither reproduces these numbers; :class:`YPSNR` and :class:`YSSIM` wrap the functions below as
torchmetrics ``Metric``s (a per-image sum and a count, summed across DDP ranks).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import Metric

# BT.601 studio-swing luma weights for 8-bit RGB (MATLAB rgb2ycbcr), and its black level.
_LUMA_WEIGHTS = (65.738 / 256.0, 129.057 / 256.0, 25.064 / 256.0)
_LUMA_OFFSET = 16.0

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2


def _to_uint8_values(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> the same in [0, 255], rounded half-to-even, as float64."""
    return ((image + 1.0) * 127.5).round().to(torch.float64)


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float64 RGB on the [0, 255] scale -> (B, H, W) studio-swing Y without the +16 offset."""
    red, green, blue = rgb.unbind(dim=1)
    return _LUMA_WEIGHTS[0] * red + _LUMA_WEIGHTS[1] * green + _LUMA_WEIGHTS[2] * blue


def _check_pair(sr: torch.Tensor, hr: torch.Tensor, crop_border: int) -> None:
    if sr.ndim != 4 or sr.size(1) != 3:
        raise ValueError(f"sr must be (B, 3, H, W) RGB in [-1, 1], got shape {tuple(sr.shape)}")
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr must have the same shape, got {tuple(sr.shape)} and {tuple(hr.shape)}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    height, width = sr.shape[-2:]
    if min(height, width) - 2 * crop_border <= 0:
        raise ValueError(f"crop_border={crop_border} leaves nothing of a {height}x{width} image")


def _crop(image: torch.Tensor, crop_border: int) -> torch.Tensor:
    if crop_border == 0:
        return image
    return image[..., crop_border:-crop_border, crop_border:-crop_border]


def y_psnr(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 0) -> torch.Tensor:
    """Per-image Y-channel PSNR in dB, the official protocol (module docstring).

    sr, hr: (B, 3, H, W) in [-1, 1]. Returns (B,) float64; +inf for identical images.
    """
    _check_pair(sr, hr, crop_border)
    difference = _luma(_to_uint8_values(sr) - _to_uint8_values(hr)) / 255.0  # linear, so Y(a) - Y(b)
    mse = _crop(difference, crop_border).pow(2).mean(dim=(-2, -1))
    return -10.0 * torch.log10(mse)


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The 11x11 window of ``cv2.getGaussianKernel(11, 1.5)`` (outer product), as a (1, 1, 11, 11) kernel."""
    offsets = torch.arange(_SSIM_WINDOW, dtype=dtype, device=device) - (_SSIM_WINDOW - 1) / 2
    profile = torch.exp(-(offsets**2) / (2 * _SSIM_SIGMA**2))
    profile = profile / profile.sum()
    return torch.outer(profile, profile).view(1, 1, _SSIM_WINDOW, _SSIM_WINDOW)


def y_ssim(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 0) -> torch.Tensor:
    """Per-image Y-channel SSIM, the official protocol (module docstring).

    sr, hr: (B, 3, H, W) in [-1, 1], at least 11 px on each side after ``crop_border``.
    Returns (B,) float64.
    """
    _check_pair(sr, hr, crop_border)
    height, width = (size - 2 * crop_border for size in sr.shape[-2:])
    if min(height, width) < _SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {_SSIM_WINDOW}x{_SSIM_WINDOW} px, got {height}x{width}"
        )
    y_sr = _crop(_luma(_to_uint8_values(sr)) + _LUMA_OFFSET, crop_border).unsqueeze(1)  # (B, 1, H, W)
    y_hr = _crop(_luma(_to_uint8_values(hr)) + _LUMA_OFFSET, crop_border).unsqueeze(1)
    window = _gaussian_window(y_sr.dtype, y_sr.device)

    # One conv over the five stacked maps; no padding = the official "filter2D then crop 5 px".
    stacked = torch.cat([y_sr, y_hr, y_sr * y_sr, y_hr * y_hr, y_sr * y_hr], dim=0)
    mu_sr, mu_hr, sr_sq, hr_sq, sr_hr = F.conv2d(stacked, window).split(y_sr.size(0), dim=0)
    variance_sr = sr_sq - mu_sr**2
    variance_hr = hr_sq - mu_hr**2
    covariance = sr_hr - mu_sr * mu_hr
    ssim_map = ((2 * mu_sr * mu_hr + _SSIM_C1) * (2 * covariance + _SSIM_C2)) / (
        (mu_sr**2 + mu_hr**2 + _SSIM_C1) * (variance_sr + variance_hr + _SSIM_C2)
    )
    return ssim_map.mean(dim=(1, 2, 3))


class _MeanOfPerImageValues(Metric):
    """Mean over images of a per-image measure; the sum and the count reduce by summation across ranks."""

    full_state_update = False
    is_differentiable = False

    total: torch.Tensor
    count: torch.Tensor

    def __init__(
        self,
        measure: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
        crop_border: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if crop_border < 0:
            raise ValueError(f"crop_border must be >= 0, got {crop_border}")
        self.measure = measure
        self.crop_border = crop_border
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.last_values = torch.empty(0, dtype=torch.float64)

    def update(self, sr: torch.Tensor, hr: torch.Tensor) -> None:
        """sr, hr: (B, 3, H, W) in [-1, 1]; adds B per-image values.

        The batch's per-image values stay readable as ``last_values`` (B,) (per-image result tables).
        """
        values = self.measure(sr.detach(), hr.detach(), self.crop_border)
        self.last_values = values
        self.total += values.sum()
        self.count += values.numel()

    def compute(self) -> torch.Tensor:
        """Mean of the per-image values seen so far (float64 scalar; NaN before any update)."""
        if self.count == 0:
            return torch.tensor(math.nan, dtype=torch.float64, device=self.total.device)
        return self.total / self.count


class YPSNR(_MeanOfPerImageValues):
    """Mean per-image Y-channel PSNR (dB) with the official protocol; see :func:`y_psnr`.

    ``kwargs`` go to torchmetrics' ``Metric`` (e.g. ``sync_on_compute``, ``process_group``).
    """

    higher_is_better = True

    def __init__(self, crop_border: int = 0, **kwargs: Any) -> None:
        super().__init__(y_psnr, crop_border, **kwargs)


class YSSIM(_MeanOfPerImageValues):
    """Mean per-image Y-channel SSIM with the official protocol; see :func:`y_ssim`.

    ``kwargs`` go to torchmetrics' ``Metric`` (e.g. ``sync_on_compute``, ``process_group``).
    """

    higher_is_better = True

    def __init__(self, crop_border: int = 0, **kwargs: Any) -> None:
        super().__init__(y_ssim, crop_border, **kwargs)


def protocol_description(crop_border: int = 0) -> str:
    """One line naming how :func:`y_psnr` / :func:`y_ssim` measure, for result files."""
    crop = "no border crop" if crop_border == 0 else f"{crop_border} px cropped from each border"
    return (
        "official TTSR: images rounded to uint8, Y = BT.601 studio swing (65.738, 129.057, 25.064)/256, "
        f"{crop}, PSNR per image then mean, SSIM 11x11 Gaussian (sigma 1.5) valid mode"
    )
