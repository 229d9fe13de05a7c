"""Y-channel PSNR/SSIM against the official evaluation's numbers, closed forms, and DDP-style reduction."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torchmetrics.utilities import dim_zero_cat

from ttsr_lightning.metrics import MeanPerImage, y_psnr, y_ssim
from ttsr_lightning.result_files import means_over_images, sort_rows

_LUMA_SUM = (65.738 + 129.057 + 25.064) / 256.0  # Y gain of a grey step (R = G = B)


def _from_uint8(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [-1, 1], the project's image convention."""
    return torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float() / 127.5 - 1.0


def _random_images(batch: int, height: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    hr = torch.rand(batch, 3, height, width, generator=generator) * 2 - 1
    sr = (hr + 0.1 * torch.randn(batch, 3, height, width, generator=generator)).clamp(-1, 1)
    return sr, hr


@pytest.fixture(scope="module")
def official_metrics(shared_fixtures: Path) -> dict[str, np.ndarray]:
    with np.load(shared_fixtures / "official_metrics.npz") as data:
        return dict(data)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_y_psnr_and_ssim_match_official_evaluation_on_photos(
    official_metrics: dict[str, np.ndarray], name: str
) -> None:
    sr = _from_uint8(official_metrics[f"sr_{name}"])
    hr = _from_uint8(official_metrics[f"hr_{name}"])
    # the official float32 steps: within 1e-6 dB of the same code under another numpy (this fixture's)
    # and of the float64 value; equal under numpy 1.x (tests/test_protocols.py)
    assert y_psnr(sr, hr).item() == pytest.approx(float(official_metrics[f"psnr_{name}"]), abs=1e-6)
    assert y_psnr(sr, hr).item() == pytest.approx(float(official_metrics[f"psnr64_{name}"]), abs=1e-6)
    assert y_ssim(sr, hr).item() == pytest.approx(float(official_metrics[f"ssim_{name}"]), abs=1e-6)


def test_y_psnr_and_ssim_match_official_pipeline_outputs(shared_fixtures: Path) -> None:
    pipeline = torch.load(shared_fixtures / "official_pipeline.pt", weights_only=False)
    assert len(pipeline["test"]) >= 2
    for stem, item in pipeline["test"].items():
        sr, hr = item["sr"].unsqueeze(0), item["HR"].unsqueeze(0)
        assert y_psnr(sr, hr).item() == pytest.approx(item["psnr"], abs=1e-5), stem
        assert y_ssim(sr, hr).item() == pytest.approx(item["ssim"], abs=1e-6), stem


def test_y_psnr_of_a_uniform_grey_offset_has_the_closed_form() -> None:
    hr = torch.full((1, 3, 16, 16), -1.0)  # black: 0 after the [0, 255] mapping
    sr = torch.full((1, 3, 16, 16), 10 / 127.5 - 1.0)  # grey level 10 in every channel
    expected = -20.0 * math.log10(10 * _LUMA_SUM / 255.0)
    assert y_psnr(sr, hr).item() == pytest.approx(expected, abs=1e-5)  # its float32 steps round
    assert y_psnr(sr, hr).item() == pytest.approx(29.45271791912147, abs=1e-12)  # official calc_psnr's


def test_rounding_is_half_to_even_before_measuring() -> None:
    # In float32, 0 maps to 127.5 and -1/127.5 to 126.5 exactly: half-to-even gives 128 and 126
    # (two levels apart); rounding half up would give 128 and 127 (one level).
    hr = torch.zeros(1, 3, 16, 16)
    sr = torch.full_like(hr, -1.0 / 127.5)
    assert ((sr + 1) * 127.5 == 126.5).all() and ((hr + 1) * 127.5 == 127.5).all()
    two_levels = -20.0 * math.log10(2 * _LUMA_SUM / 255.0)
    assert y_psnr(sr, hr).item() == pytest.approx(two_levels, abs=1e-5)
    assert y_psnr(sr, hr).item() == pytest.approx(43.43211602794101, abs=1e-12)  # official calc_psnr's


def test_y_ssim_is_one_for_identical_images_and_below_for_noise() -> None:
    sr, hr = _random_images(batch=2, height=24, width=20, seed=0)
    assert torch.allclose(y_ssim(hr, hr), torch.ones(2, dtype=torch.float64), atol=1e-12)
    assert (y_ssim(sr, hr) < 0.99).all()


def test_crop_border_equals_measuring_the_cropped_images() -> None:
    sr, hr = _random_images(batch=2, height=32, width=28, seed=1)
    cropped_sr, cropped_hr = sr[..., 4:-4, 4:-4], hr[..., 4:-4, 4:-4]
    assert torch.equal(y_psnr(sr, hr, crop_border=4), y_psnr(cropped_sr, cropped_hr))
    assert torch.equal(y_ssim(sr, hr, crop_border=4), y_ssim(cropped_sr, cropped_hr))
    assert not torch.equal(y_psnr(sr, hr, crop_border=4), y_psnr(sr, hr))


def test_functions_return_one_value_per_image() -> None:
    sr, hr = _random_images(batch=3, height=16, width=16, seed=2)
    batched = y_psnr(sr, hr)
    assert batched.shape == (3,) and batched.dtype == torch.float64
    singles = torch.cat([y_psnr(sr[i : i + 1], hr[i : i + 1]) for i in range(3)])
    assert torch.equal(batched, singles)
    ssims = y_ssim(sr, hr)
    assert ssims.shape == (3,) and ssims.dtype == torch.float64
    single_ssims = torch.cat([y_ssim(sr[i : i + 1], hr[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(ssims, single_ssims, rtol=0, atol=1e-12)
    assert len(set(ssims.tolist())) == 3  # three images, three values: not one value repeated


@pytest.mark.parametrize(
    ("sr_shape", "hr_shape", "crop_border", "message"),
    [
        ((1, 3, 16, 16), (1, 3, 16, 12), 0, "same shape"),
        ((1, 1, 16, 16), (1, 1, 16, 16), 0, "RGB"),
        ((1, 3, 16, 16), (1, 3, 16, 16), 8, "leaves nothing"),
        ((1, 3, 16, 16), (1, 3, 16, 16), -1, "crop_border"),
    ],
)
def test_bad_inputs_are_rejected(
    sr_shape: tuple[int, ...], hr_shape: tuple[int, ...], crop_border: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        y_psnr(torch.zeros(sr_shape), torch.zeros(hr_shape), crop_border)


def test_y_ssim_rejects_images_smaller_than_its_window() -> None:
    with pytest.raises(ValueError, match="at least 11x11"):
        y_ssim(torch.zeros(1, 3, 20, 20), torch.zeros(1, 3, 20, 20), crop_border=5)


@pytest.mark.parametrize("measure", [y_psnr, y_ssim])
def test_metric_is_the_mean_of_per_image_values_over_batches(measure: Callable[..., torch.Tensor]) -> None:
    metric = MeanPerImage(functools.partial(measure, crop_border=2))
    per_image: list[torch.Tensor] = []
    for seed, batch in enumerate((2, 3, 1)):
        sr, hr = _random_images(batch=batch, height=20, width=24, seed=10 + seed)
        seen = sum(len(values) for values in per_image)
        metric.update(sr, hr, range(seen, seen + batch))
        per_image.append(measure(sr, hr, crop_border=2))
    expected = torch.cat(per_image).mean()
    assert metric.compute().item() == pytest.approx(expected.item(), abs=1e-12)
    assert not metric.state_dict()  # the per-image values stay out of checkpoints
    metric.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(metric.compute().item())


def _two_ranks(measure: Callable[..., torch.Tensor]) -> tuple[MeanPerImage, MeanPerImage]:
    """Rank 0 and rank 1 of a metric: rank 0's compute gathers rank 1's states as DDP would (Metric.compute
    calls torch.distributed.all_gather on each state and concatenates the ranks' values in rank order)."""
    peer = MeanPerImage(measure)

    def all_gather(tensor: torch.Tensor, group: object = None) -> list[torch.Tensor]:
        states = {state.dtype: state for state in (dim_zero_cat(peer.values), dim_zero_cat(peer.indices))}
        return [tensor, states[tensor.dtype]]  # values are float64, indices int64

    return MeanPerImage(measure, dist_sync_fn=all_gather, distributed_available_fn=lambda: True), peer


@pytest.mark.parametrize("measure", [y_psnr, y_ssim])
def test_metric_states_reduce_across_ranks_like_one_metric_over_all_images(
    measure: Callable[..., torch.Tensor],
) -> None:
    images = [
        _random_images(batch=batch, height=16, width=16, seed=20 + i) for i, batch in enumerate((4, 1, 2))
    ]
    single = MeanPerImage(measure)
    for (sr, hr), indices in zip(images, ([0, 1, 2, 3], [4], [5, 6]), strict=True):
        single.update(sr, hr, indices)
    rank0, rank1 = _two_ranks(measure)
    rank0.update(*images[0], [0, 1, 2, 3])  # rank 0 sees 4 images, rank 1 sees 3 in two batches
    rank1.update(*images[1], [4])
    rank1.update(*images[2], [5, 6])

    assert rank0.compute().item() == single.compute().item()
    # Averaging the ranks' means instead would weight rank 1's images more.
    rank_means = [measure(*images[0]).mean(), torch.cat([measure(*images[1]), measure(*images[2])]).mean()]
    assert abs(float(sum(rank_means)) / 2 - single.compute().item()) > 1e-6
    assert len(dim_zero_cat(rank0.values)) == 4  # compute() restored the local state after the synced one


def test_the_logged_mean_of_a_set_split_unevenly_over_two_ranks_is_its_written_mean() -> None:
    """Three images on two ranks as RankShardSampler shares them (0 and 2 on rank 0, 1 on rank 1): the
    metric's mean, gathered from both ranks, equals the per-set mean written from the rows, to the bit."""
    psnrs = [31.76, 24.55, 27.15]
    assert sum(psnrs[i] for i in (0, 2, 1)) / 3 != sum(psnrs) / 3  # summed in rank order: another mean

    def image(index: int) -> torch.Tensor:
        return torch.full((1, 3, 1, 1), psnrs[index], dtype=torch.float64)

    rank0, rank1 = _two_ranks(lambda sr, hr: sr.flatten(1)[:, 0])
    set_and_protocol = {"set": "CUFED5_L1", "set_index": 0, "protocol": "ttsr_official", "protocol_index": 0}
    rows: list[list[dict[str, object]]] = [[], []]
    for index in range(3):
        rank = index % 2
        metric = (rank0, rank1)[rank]
        metric.update(image(index), image(index), [index])
        image_row = {"index": index, "image": f"00{index}_0", "psnr": float(metric.last_values[0])}
        rows[rank].append({**set_and_protocol, **image_row})
    written = means_over_images(sort_rows(rows[0] + rows[1]), ("set", "protocol"), ("psnr",))
    assert written[0]["images"] == 3
    assert rank0.compute().item() == written[0]["psnr"] == sum(psnrs) / 3
