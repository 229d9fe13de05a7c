"""patch_search's relevance kernel setting: the torch passes unless the Triton kernel is asked for, and a
Triton kernel that fails falls back to them, with one warning per process and the torch passes' results.

No GPU here: the tests let the search try its Triton kernel on CPU tensors (``_TRITON_DEVICE_TYPES``)
and put a stand-in where the kernel would be imported (``_triton_kernel``), or make the import fail.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator

import pytest
import torch

from ttsr_lightning.models import patch_search
from ttsr_lightning.models.lean_search_transfer import LeanSearchTransfer
from ttsr_lightning.models.search_transfer import TransferredTextures


def _features(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Post-ReLU query, key and lv1/lv2/lv3 values: LR 6x7 against a Ref of 5x6 lv3 positions, 2 items."""
    generator = torch.Generator().manual_seed(seed)

    def relu_noise(channels: int, height: int, width: int) -> torch.Tensor:
        return torch.randn(2, channels, height, width, generator=generator).relu()

    return (
        relu_noise(16, 6, 7),
        relu_noise(16, 5, 6),
        relu_noise(4, 20, 24),
        relu_noise(8, 10, 12),
        relu_noise(16, 5, 6),
    )


def _assert_equal(result: TransferredTextures, expected: TransferredTextures) -> None:
    for name in TransferredTextures._fields:
        assert torch.equal(getattr(result, name), getattr(expected, name)), name


class _StandIn:
    """Where the Triton kernel would run: counts its calls; from call ``fail_at`` on it raises
    ``RuntimeError``, before that it returns maxima off by one (so a result that kept them shows)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls = 0
        self.fail_at = fail_at

    def __call__(
        self,
        pixel_dots: torch.Tensor,
        key_scale: torch.Tensor,
        tile_size: tuple[int, int],
        ref_size: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("Triton launch failed: no kernel image for this device")
        best, index = patch_search.relevance_max(pixel_dots, key_scale, tile_size, ref_size)
        return (best if self.fail_at is None else best + 1), index


@pytest.fixture
def kernel_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process in which the Triton kernel has not failed yet and would run on CPU tensors."""
    monkeypatch.setattr(patch_search, "_triton_failure", None)
    monkeypatch.setattr(patch_search, "_TRITON_DEVICE_TYPES", ("cuda", "cpu"))
    getter = patch_search._triton_kernel  # the real one: a test may put a stand-in's getter there
    getter.cache_clear()
    yield
    getter.cache_clear()


def _use(monkeypatch: pytest.MonkeyPatch, stand_in: _StandIn) -> None:
    getter: Callable[[], patch_search.TilePass] = lambda: stand_in  # noqa: E731
    monkeypatch.setattr(patch_search, "_triton_kernel", getter)


@pytest.mark.usefixtures("kernel_state")
def test_the_torch_passes_run_unless_the_triton_kernel_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """Default off: with a kernel at hand and a device it takes, the default search never calls it;
    ``relevance_kernel="triton"`` does, tile by tile (12 tiles of at most 2x2 LR positions here)."""
    stand_in = _StandIn()
    _use(monkeypatch, stand_in)
    features = _features()
    with torch.no_grad():
        default = LeanSearchTransfer(chunk_size=4)(*features)
        assert stand_in.calls == 0
        asked = LeanSearchTransfer(chunk_size=4, relevance_kernel="triton")(*features)
    assert stand_in.calls == 12  # the LR grid's 6x7 positions in 3 x 4 tiles (both items in each)
    _assert_equal(asked, default)
    assert LeanSearchTransfer().relevance_kernel == "torch"


def test_the_triton_kernel_is_not_tried_on_devices_it_does_not_take(monkeypatch: pytest.MonkeyPatch) -> None:
    """As shipped, only CUDA tensors go to the kernel: a CPU search asked for it runs the torch passes
    without looking for Triton, and without a warning (nothing failed)."""
    stand_in = _StandIn()
    _use(monkeypatch, stand_in)
    monkeypatch.setattr(patch_search, "_triton_failure", None)
    features = _features()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            asked = LeanSearchTransfer(chunk_size=4, relevance_kernel="triton")(*features)
    assert stand_in.calls == 0
    _assert_equal(asked, LeanSearchTransfer(chunk_size=4)(*features))


def _raising_kernel(monkeypatch: pytest.MonkeyPatch) -> _StandIn:
    stand_in = _StandIn(fail_at=1)
    _use(monkeypatch, stand_in)
    return stand_in


def _failing_import(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import triton` raise ImportError, whether Triton is installed or not.
    monkeypatch.setitem(sys.modules, "triton", None)
    monkeypatch.delitem(sys.modules, "ttsr_lightning.models.relevance_triton", raising=False)


@pytest.mark.usefixtures("kernel_state")
@pytest.mark.parametrize(
    ("failure", "cause"),
    [
        (_raising_kernel, "RuntimeError: Triton launch failed"),
        (_failing_import, "ModuleNotFoundError: import of triton halted"),
    ],
    ids=["kernel_raises", "import_fails"],
)
def test_a_failing_triton_kernel_falls_back_to_the_torch_passes_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, failure: Callable[[pytest.MonkeyPatch], object], cause: str
) -> None:
    """Two searches asked for the kernel: both give the torch passes' results bit for bit, and one
    RelevanceKernelFallback names the setting and the cause; the failed kernel is not tried again."""
    features = _features(seed=1)
    with torch.no_grad():
        expected = LeanSearchTransfer(chunk_size=4)(*features)
    stand_in = failure(monkeypatch)
    module = LeanSearchTransfer(chunk_size=4, relevance_kernel="triton")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            results = [module(*features), module(*features)]
    for result in results:
        _assert_equal(result, expected)
    fallbacks = [w for w in caught if issubclass(w.category, patch_search.RelevanceKernelFallback)]
    assert len(fallbacks) == 1 and len(caught) == 1, [str(w.message) for w in caught]
    message = str(fallbacks[0].message)
    assert message.startswith("relevance_kernel='triton': the Triton relevance kernel failed (" + cause)
    if isinstance(stand_in, _StandIn):
        assert stand_in.calls == 1


@pytest.mark.usefixtures("kernel_state")
def test_a_kernel_failing_mid_search_gives_the_torch_passes_result_not_a_mix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kernel's first four tiles return maxima off by one, the fifth raises: the whole search runs
    again with the torch passes, so none of those four tiles' values survive."""
    features = _features(seed=2)
    with torch.no_grad():
        expected = LeanSearchTransfer(chunk_size=4)(*features)
        stand_in = _StandIn(fail_at=5)
        _use(monkeypatch, stand_in)
        with pytest.warns(patch_search.RelevanceKernelFallback, match="RuntimeError"):
            result = LeanSearchTransfer(chunk_size=4, relevance_kernel="triton")(*features)
    assert stand_in.calls == 5
    _assert_equal(result, expected)


def test_an_unknown_relevance_kernel_is_refused_naming_the_setting() -> None:
    refusal = r"relevance_kernel must be one of \['torch', 'triton'\], got 'cuda'"
    with pytest.raises(ValueError, match=refusal):
        LeanSearchTransfer(relevance_kernel="cuda")
    query, key = _features()[:2]
    with pytest.raises(ValueError, match="relevance_kernel"):
        patch_search.search(query, [key], relevance_kernel="Triton")
