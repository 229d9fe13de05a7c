"""Y-channel PSNR and SSIM exactly as the official TTSR evaluation (``utils.calc_psnr_and_ssim``).

The protocol, step by step (researchmm/TTSR ``utils.py``):

1. images in [-1, 1] are mapped to [0, 255] with ``(x + 1) * 127.5`` in their own dtype and rounded
   half-to-even (``torch.round``), i.e. the uint8 values a saved PNG would hold (no clamping: the
   generator output is already clamped);
2. the luma is BT.601 "studio swing" (MATLAB ``rgb2ycbcr``): ``Y = (65.738 R + 129.057 G + 25.064 B) / 256``
   (+ 16 for SSIM; PSNR only sees differences), not rounded;
3. PSNR = ``-10 log10(mean(dY^2))`` with ``dY`` on the [0, 1] scale (peak 1), whole image, in the
   official code's float32 steps (below);
4. SSIM: 11x11 Gaussian window (sigma 1.5), C1 = (0.01*255)^2, C2 = (0.03*255)^2, "valid" filtering
   (the map is 10 px smaller in each dimension, no padding), mean of the map.

``crop_border`` shaves that many pixels off every side before both measures (0 in the official code;
BasicSR/mmagic use the scale, 4). SSIM runs in float64, as the official code's does. The official
PSNR and mmagic's take their mean squared error in float32 with numpy, whose rounding moves the dB
by up to ~1e-6: :func:`_numpy_float32_mean` repeats numpy's summation order (numpy 1.x, what those
codebases ran on), so both PSNRs equal their code's to ~1e-14 rather than to ~1e-6.

torchmetrics' SSIM pads instead of using the valid region and kornia's YCbCr is full-range, so
neither reproduces these numbers. The other conventions (BasicSR's float32 Y, mmagic's RGB) are
:func:`psnr` / :func:`ssim` with another ``colour`` and :func:`image_values` rounding, chosen by a
:class:`~ttsr_lightning.protocols.Protocol`; :class:`MeanPerImage` (and :class:`MeanDistancePerImage`,
lower is better) wraps any per-image measure as a torchmetrics ``Metric``: it keeps every image's value,
gathered from every DDP rank, and takes their mean as the result files do
(:func:`~ttsr_lightning.result_files.mean_over_images`), so a logged mean is the written one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from ttsr_lightning.result_files import mean_over_images

# BT.601 studio-swing luma weights for 8-bit RGB (MATLAB rgb2ycbcr): numerators of /256, and its black level.
_LUMA_NUMERATORS = (65.738, 129.057, 25.064)
_LUMA_WEIGHTS = tuple(numerator / 256.0 for numerator in _LUMA_NUMERATORS)
_LUMA_OFFSET = 16.0
# The same luma as BasicSR's bgr2ycbcr writes it: (R, G, B) weights on [0, 1] values, / 255 after.
_BASICSR_WEIGHTS = (65.481, 128.553, 24.966)

Colour = Literal["y_ttsr", "y_basicsr", "rgb"]
Rounding = Literal["ttsr", "clamp_round", "clamp"]

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2

# numpy (1.x) reduces a float32 array in blocks of its buffer size, each block summed pairwise
# (halves split at multiples of 8, leaves of <= 128 values summed in 8 lanes), the block sums added in order.
_NUMPY_BUFFER = 8192
_NUMPY_PAIRWISE_LEAF = 128
_NUMPY_LANES = 8


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


def image_values(image: torch.Tensor, rounding: Rounding = "ttsr") -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> the pixel values a convention measures, float64 on [0, 255].

    ``"ttsr"``: ``round((x + 1) * 127.5)`` half-to-even, no clamp (official ``calc_psnr_and_ssim``);
    ``"clamp_round"``: ``round(clamp((x + 1) / 2, 0, 1) * 255)`` (BasicSR / mmsr / MASA ``tensor2img``);
    ``"clamp"``: ``clamp(x * 127.5 + 127.5, 0, 255)``, not rounded (mmagic 1.x ``destruct``).
    """
    if rounding == "ttsr":
        return _to_uint8_values(image)
    if rounding == "clamp_round":
        return (((image + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0).round().to(torch.float64)
    if rounding == "clamp":
        return (image * 127.5 + 127.5).clamp(0.0, 255.0).to(torch.float64)
    raise ValueError(f"rounding must be one of ttsr, clamp_round, clamp; got {rounding!r}")


def channels(values: torch.Tensor, colour: Colour) -> torch.Tensor:
    """(B, 3, H, W) pixel values on [0, 255] (RGB) -> the (B, C, H, W) float64 channels measured.

    ``"y_ttsr"``: Y = 16 + (65.738 R + 129.057 G + 25.064 B) / 256 (official TTSR ``calc_ssim``, MATLAB);
    ``"y_basicsr"``: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, through the float32 steps of
    BasicSR's ``to_y_channel`` / ``bgr2ycbcr`` fed in its pipeline's (BGR) order, i.e. R weighted
    65.481 (the same formula as mmsr's, MASA-SR's after its 2021-06-08 fix); ``"rgb"``: the three
    channels, rounded to float32 as mmagic does (its TTSR evaluation).
    """
    if colour == "y_ttsr":
        return (_luma(values) + _LUMA_OFFSET).unsqueeze(1)
    if colour == "y_basicsr":
        # img.astype(float32) / 255 -> float64 dot + 16 -> / 255 -> float32 -> * 255 (float32)
        scaled = (values.to(torch.float32) / 255.0).to(torch.float64)
        red, green, blue = scaled.unbind(dim=1)
        luma = blue * _BASICSR_WEIGHTS[2] + green * _BASICSR_WEIGHTS[1] + red * _BASICSR_WEIGHTS[0] + 16.0
        return ((luma / 255.0).to(torch.float32) * 255.0).to(torch.float64).unsqueeze(1)
    if colour == "rgb":  # mmagic's img_transform: astype(float32); to_numpy: float64
        return values.to(torch.float32).to(torch.float64)
    raise ValueError(f"colour must be one of y_ttsr, y_basicsr, rgb; got {colour!r}")


def psnr(sr: torch.Tensor, hr: torch.Tensor, colour: Colour = "y_ttsr", crop_border: int = 0) -> torch.Tensor:
    """Per-image PSNR (dB, peak 255) of pixel values on [0, 255] ((B, 3, H, W), see :func:`image_values`):
    the MSE over every measured channel and pixel after ``crop_border``, in float64, or in the float32
    steps of the official ``calc_psnr`` (``y_ttsr``) and of mmagic's ``psnr()`` (``rgb``), each image's
    as numpy computes it alone. Returns (B,); +inf for identical images."""
    _check_pair(sr, hr, crop_border)
    if colour == "y_ttsr":  # calc_psnr: float32 luma of the difference, np.mean, math.log10
        luma = _crop(_official_luma_difference(sr, hr), crop_border)
        return -10.0 * torch.log10(_numpy_float32_mean(luma.square().flatten(1)).to(torch.float64))
    if colour == "rgb":  # mmagic psnr(): float32 pixels, np.mean, float32 np.sqrt, 255. / it in float64
        difference = _crop(sr, crop_border).to(torch.float32) - _crop(hr, crop_border).to(torch.float32)
        root_mse = _float32_exactly(
            _numpy_float32_mean(difference.square().flatten(1)).to(torch.float64).sqrt()
        )
        return 20.0 * torch.log10(255.0 / root_mse.to(torch.float64))
    measured = channels(sr, colour) - channels(hr, colour)
    mse = _crop(measured, crop_border).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(255.0**2 / mse)


def _official_luma_difference(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) pixel values -> (B, H, W) float32: calc_psnr's luma of the difference on the [0, 1]
    scale, each float32 step rounded as numpy rounds it: ``(d / 255) * w / 256`` per channel, R + G + B."""
    difference = _float32_exactly((sr.to(torch.float32) - hr.to(torch.float32)).to(torch.float64) / 255.0)
    red, green, blue = (
        difference[:, index] * numerator / 256.0 for index, numerator in enumerate(_LUMA_NUMERATORS)
    )
    return (red + green) + blue


def _float32_exactly(value: torch.Tensor) -> torch.Tensor:
    """A float64 quotient or square root of float32 operands, rounded to float32: the correctly rounded
    float32 result, as numpy's. torch's own float32 division and square root need not be (its CPU sqrt
    is 1 ulp off for ~20% of values; CUDA divides by a Python scalar through its reciprocal)."""
    return value.to(torch.float32)


def _numpy_float32_mean(values: torch.Tensor) -> torch.Tensor:
    """(B, N) float32 -> (B,) float32: ``np.mean`` of each row as numpy 1.x computes it for a float32
    array laid out in that order (see ``_NUMPY_BUFFER``; the float32 sum / N rounded via float64)."""
    batch, count = values.shape
    whole = count - count % _NUMPY_BUFFER
    total = values.new_zeros(batch)
    if whole:
        blocks = _pairwise_sum(values[:, :whole].reshape(-1, _NUMPY_BUFFER)).view(batch, -1)
        for index in range(blocks.size(1)):
            total = total + blocks[:, index]
    if count > whole:
        total = total + _pairwise_sum(values[:, whole:])
    return (total.to(torch.float64) / count).to(torch.float32)


def _pairwise_sum(rows: torch.Tensor) -> torch.Tensor:
    """(B, N) float32 -> (B,): numpy's ``pairwise_sum`` of each row, in float32 throughout."""
    count = rows.size(1)
    if count < _NUMPY_LANES:
        total = rows.new_zeros(rows.size(0))
        for index in range(count):
            total = total + rows[:, index]
        return total
    if count <= _NUMPY_PAIRWISE_LEAF:
        lanes_end = count - count % _NUMPY_LANES
        lanes = rows[:, :_NUMPY_LANES]
        for start in range(_NUMPY_LANES, lanes_end, _NUMPY_LANES):
            lanes = lanes + rows[:, start : start + _NUMPY_LANES]
        while lanes.size(1) > 1:  # ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
            lanes = lanes[:, 0::2] + lanes[:, 1::2]
        total = lanes[:, 0]
        for index in range(lanes_end, count):
            total = total + rows[:, index]
        return total
    half = count // 2 - (count // 2) % _NUMPY_LANES
    if 2 * half == count:  # equal halves: both in one call
        halves = _pairwise_sum(rows.reshape(-1, half)).view(-1, 2)
        return halves[:, 0] + halves[:, 1]
    return _pairwise_sum(rows[:, :half]) + _pairwise_sum(rows[:, half:])


def ssim(sr: torch.Tensor, hr: torch.Tensor, colour: Colour = "y_ttsr", crop_border: int = 0) -> torch.Tensor:
    """Per-image SSIM of pixel values on [0, 255] ((B, 3, H, W)): the official / BasicSR ``_ssim`` (11x11
    Gaussian window, sigma 1.5, valid filtering, C1 = (0.01*255)^2, C2 = (0.03*255)^2, float64) of
    each measured channel after ``crop_border``, averaged over the channels. Returns (B,)."""
    _check_pair(sr, hr, crop_border)
    height, width = (size - 2 * crop_border for size in sr.shape[-2:])
    if min(height, width) < _SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {_SSIM_WINDOW}x{_SSIM_WINDOW} px, got {height}x{width}"
        )
    measured_sr = _crop(channels(sr, colour), crop_border)
    measured_hr = _crop(channels(hr, colour), crop_border)
    batch, count = measured_sr.shape[:2]
    maps = _ssim_map(
        measured_sr.reshape(batch * count, 1, height, width),
        measured_hr.reshape(batch * count, 1, height, width),
    )
    return maps.mean(dim=(1, 2, 3)).view(batch, count).mean(dim=1)


def y_psnr(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 0) -> torch.Tensor:
    """Per-image Y-channel PSNR in dB, the official TTSR protocol (module docstring).

    sr, hr: (B, 3, H, W) in [-1, 1]. Returns (B,) float64; +inf for identical images.
    """
    _check_pair(sr, hr, crop_border)
    return psnr(_to_uint8_values(sr), _to_uint8_values(hr), "y_ttsr", crop_border)


def _gaussian_profile(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``cv2.getGaussianKernel(11, 1.5)``: the 1-D profile whose outer product is the 11x11 window."""
    offsets = torch.arange(_SSIM_WINDOW, dtype=dtype, device=device) - (_SSIM_WINDOW - 1) / 2
    profile = torch.exp(-(offsets**2) / (2 * _SSIM_SIGMA**2))
    return profile / profile.sum()


def y_ssim(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 0) -> torch.Tensor:
    """Per-image Y-channel SSIM, the official TTSR protocol (module docstring).

    sr, hr: (B, 3, H, W) in [-1, 1], at least 11 px on each side after ``crop_border``.
    Returns (B,) float64.
    """
    _check_pair(sr, hr, crop_border)
    return ssim(_to_uint8_values(sr), _to_uint8_values(hr), "y_ttsr", crop_border)


def _ssim_map(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """The SSIM map of two (N, 1, H, W) float64 images, valid filtering: (N, 1, H - 10, W - 10)."""
    profile = _gaussian_profile(first.dtype, first.device)
    # The five stacked maps filtered by the 11x11 window (outer product of the profile) as a column
    # then a row pass: the same filter in 22 taps instead of 121 (float64 sums in another order: the
    # values agree with the official filter2D's to ~1e-15); no padding = "filter2D then crop 5 px".
    stacked = torch.cat([first, second, first * first, second * second, first * second], dim=0)
    filtered = F.conv2d(F.conv2d(stacked, profile.view(1, 1, -1, 1)), profile.view(1, 1, 1, -1))
    mu_first, mu_second, first_sq, second_sq, cross = filtered.split(first.size(0), dim=0)
    variance_first = first_sq - mu_first**2
    variance_second = second_sq - mu_second**2
    covariance = cross - mu_first * mu_second
    return ((2 * mu_first * mu_second + _SSIM_C1) * (2 * covariance + _SSIM_C2)) / (
        (mu_first**2 + mu_second**2 + _SSIM_C1) * (variance_first + variance_second + _SSIM_C2)
    )


class MeanPerImage(Metric):
    """Mean over images of a per-image similarity ``measure(sr, hr) -> (B,)`` (higher is better: PSNR,
    SSIM; a distance is :class:`MeanDistancePerImage`). It keeps each image's value and its index in
    the set; torchmetrics gathers both from every rank (ranks may hold different numbers of images),
    and the mean is :func:`~ttsr_lightning.result_files.mean_over_images` of the values in index order:
    the computation, and the order of the sum, of the per-set means the result files hold. It is the
    mean that Lightning logs and monitors.

    ``kwargs`` go to torchmetrics' ``Metric`` (e.g. ``sync_on_compute``, ``process_group``).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    # one (B,) tensor per update; while compute runs, one tensor of every rank's values
    values: list[torch.Tensor]
    indices: list[torch.Tensor]

    def __init__(self, measure: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.measure = measure
        self.add_state("values", default=[], dist_reduce_fx="cat")
        self.add_state("indices", default=[], dist_reduce_fx="cat")
        self.last_values = torch.empty(0, dtype=torch.float64)

    def update(self, sr: torch.Tensor, hr: torch.Tensor, indices: Sequence[int]) -> None:
        """sr, hr: (B, 3, H, W) in [-1, 1]; indices: the B images' indices in their set (dataset order).

        The batch's per-image values stay readable as ``last_values`` (B,) float64 (per-image result tables).
        """
        values = self.measure(sr.detach(), hr.detach()).to(torch.float64)
        if len(indices) != values.numel():
            raise ValueError(f"{values.numel()} per-image values but {len(indices)} image indices")
        self.last_values = values
        self.values.append(values)
        self.indices.append(torch.tensor(indices, dtype=torch.int64, device=values.device))

    def compute(self) -> torch.Tensor:
        """Mean of the per-image values seen so far (float64 scalar; NaN before any update)."""
        ordered: list[float] = []
        if len(self.values):  # empty before any update (on every rank)
            order = torch.argsort(dim_zero_cat(self.indices), stable=True)
            ordered = dim_zero_cat(self.values)[order].tolist()
        return torch.tensor(mean_over_images(ordered), dtype=torch.float64, device=self.device)


class MeanDistancePerImage(MeanPerImage):
    """:class:`MeanPerImage` of a per-image distance (LPIPS): lower is better."""

    higher_is_better = False
