"""LPIPS equals the reference implementation (the lpips package) on the same weights, on photographs;
its weights are found like VGG19's; without them it is skipped with one warning, never run on random
weights."""

from __future__ import annotations

import dataclasses
import urllib.error
import warnings
from pathlib import Path

import pytest
import torch

from helpers.lpips_reference import (
    REFERENCE_VALUES,
    SEEDED_WEIGHTS_SHA256,
    photo_pairs,
    reference_lpips,
    seeded_alexnet_state_dict,
    weights_digest,
)
from ttsr_lightning import lpips_setting as lpips_module
from ttsr_lightning import pretrained
from ttsr_lightning.errors import ConfigError
from ttsr_lightning.lpips_setting import load_lpips, lpips_from_files
from ttsr_lightning.models.lpips import LPIPS, MIN_IMAGE_SIZE
from ttsr_lightning.pretrained import (
    ALEXNET,
    ALEXNET_ENV_VAR,
    LPIPS_HEADS_SHA256,
    lpips_heads_file,
    sha256_of_file,
)

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def seeded_alexnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeded random AlexNet (torchvision layout) saved as torchvision saves its file."""
    path = tmp_path_factory.mktemp("alexnet") / "alexnet-seeded.pth"
    torch.save(seeded_alexnet_state_dict(), path)
    return path


@pytest.fixture(scope="module")
def ours(seeded_alexnet_file: Path) -> LPIPS:
    heads = lpips_heads_file()
    assert heads is not None, "torchmetrics ships the LPIPS heads (functional/image/lpips_models/alex.pth)"
    return lpips_from_files(seeded_alexnet_file, heads)


@pytest.fixture
def alexnet_hash_of(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Makes a file the expected AlexNet file (its sha256 the expected one); returns the setter."""

    def accept(path: Path) -> None:
        monkeypatch.setattr(
            lpips_module, "ALEXNET", dataclasses.replace(ALEXNET, sha256=sha256_of_file(path))
        )

    return accept


@pytest.fixture
def no_alexnet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch.hub dir and no TTSR_ALEXNET_WEIGHTS; returns where the cache would hold the file."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(ALEXNET_ENV_VAR, raising=False)
    return ALEXNET.cache_path()


def test_equals_the_lpips_package_on_photographs(seeded_alexnet_file: Path, ours: LPIPS) -> None:
    try:
        reference, heads, _ = reference_lpips(seeded_alexnet_state_dict())
    except ImportError:
        pytest.skip("the reference lpips package is not installed (pip install --no-deps lpips==0.1.4)")
    assert sha256_of_file(heads) == LPIPS_HEADS_SHA256  # the same heads as torchmetrics'
    worst = 0.0
    for name, hr, bicubic, shifted in photo_pairs():
        for distorted in (bicubic, shifted):
            with torch.no_grad():
                mine = ours(hr, distorted)
            theirs = reference(hr, distorted)
            assert mine.shape == (1,) and float(mine) > 0, name
            worst = max(worst, float((mine - theirs).abs().max()))
    assert worst <= TOLERANCE


def test_equals_the_recorded_reference_values(ours: LPIPS) -> None:
    """The values the lpips package printed on these weights (tests/helpers/lpips_reference.py)."""
    if weights_digest(seeded_alexnet_state_dict()) != SEEDED_WEIGHTS_SHA256:
        pytest.skip("this torch draws other seeded weights than those the reference values were made on")
    for name, hr, bicubic, shifted in photo_pairs():
        with torch.no_grad():
            values = (float(ours(hr, bicubic)), float(ours(hr, shifted)))
        assert values == pytest.approx(REFERENCE_VALUES[name], abs=TOLERANCE), name


def test_a_distance_per_image_zero_for_identical_symmetric_and_any_size(ours: LPIPS) -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 47, 61, generator=generator) * 2 - 1
    y = (x + 0.2 * torch.randn(2, 3, 47, 61, generator=generator)).clamp(-1, 1)
    with torch.no_grad():
        both = ours(x, y)
        assert both.shape == (2,) and both.dtype == torch.float32
        torch.testing.assert_close(both, torch.cat([ours(x[:1], y[:1]), ours(x[1:], y[1:])]))
        torch.testing.assert_close(ours(y, x), both)
        assert ours(x, x).abs().max() < 1e-7
        assert ours(x.double(), y.double()).dtype == torch.float32  # measured in the network's dtype


def test_images_smaller_than_the_receptive_minimum_are_refused(ours: LPIPS) -> None:
    x = torch.zeros(1, 3, MIN_IMAGE_SIZE, 40)
    assert ours(x, x).shape == (1,)
    with pytest.raises(ValueError, match=r"at least 31x31 px, got 40x30"):
        ours(torch.zeros(1, 3, 30, 40), torch.zeros(1, 3, 30, 40))
    with pytest.raises(ValueError, match="one shape"):
        ours(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 36))


def test_the_network_is_frozen_and_loads_torchvision_keys(ours: LPIPS) -> None:
    assert not any(parameter.requires_grad for parameter in ours.parameters())
    state_dict = seeded_alexnet_state_dict()
    assert torch.equal(ours.state_dict()["alexnet.features.8.weight"], state_dict["features.8.weight"])
    del state_dict["features.3.bias"]
    state_dict["features.6.weight"] = torch.zeros(384, 192, 1, 1)
    with pytest.raises(ValueError) as error:
        LPIPS().load_alexnet(state_dict)
    assert "features.3.bias" in str(error.value) and "features.6.weight" in str(error.value)


def test_false_gives_no_network_and_says_so() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_lpips(False) == (None, "off (lpips=false)")
        assert load_lpips("false")[0] is None


def test_auto_without_weights_is_skipped_with_one_warning(no_alexnet: Path) -> None:
    with pytest.warns(UserWarning) as record:
        network, description = load_lpips("auto")
    assert network is None and len(record) == 1
    assert "LPIPS skipped" in str(record[0].message) and str(no_alexnet) in str(record[0].message)
    assert description.startswith("skipped (lpips=auto)") and ALEXNET_ENV_VAR in description
    assert not no_alexnet.exists()  # auto never downloads


def test_true_without_weights_is_a_one_line_error_naming_where_it_looked(
    no_alexnet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(url: str, destination: str, progress: bool = True) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(pretrained, "download_url_to_file", offline)
    with pytest.raises(ConfigError) as error:
        load_lpips(True)
    message = str(error.value)
    assert "\n" not in message and message.startswith("lpips=true: could not download")
    assert ALEXNET.url in message and str(no_alexnet) in message and ALEXNET_ENV_VAR in message


@pytest.mark.parametrize("how", ["cache", "env", "path"])
def test_weights_from_the_cache_the_environment_or_a_path(
    how: str,
    no_alexnet: Path,
    seeded_alexnet_file: Path,
    alexnet_hash_of,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    ours: LPIPS,
) -> None:
    alexnet_hash_of(seeded_alexnet_file)
    setting: str | bool = "auto"
    if how == "cache":
        no_alexnet.parent.mkdir(parents=True)
        no_alexnet.write_bytes(seeded_alexnet_file.read_bytes())
        setting = True
    elif how == "env":
        monkeypatch.setenv(ALEXNET_ENV_VAR, str(seeded_alexnet_file))
    else:
        setting = str(seeded_alexnet_file)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        network, description = load_lpips(setting)
    assert network is not None and "lower is better" in description
    x = torch.rand(1, 3, 40, 40) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(network(x, -x), ours(x, -x))


def test_a_named_file_that_is_missing_or_not_torchvisions_is_an_error(
    no_alexnet: Path, seeded_alexnet_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(
        ConfigError, match=r"lpips=.*missing.pth: AlexNet weights file .*missing.pth does not"
    ):
        load_lpips(str(seeded_alexnet_file.parent / "missing.pth"))
    monkeypatch.setenv(ALEXNET_ENV_VAR, str(seeded_alexnet_file))  # random weights: the hash differs
    with pytest.raises(ConfigError, match=f"not torchvision's AlexNet: sha256 .*expected {ALEXNET.sha256}"):
        load_lpips("auto")
    with pytest.raises(ConfigError, match="lpips: expected auto, true, false or a path"):
        load_lpips(3)  # type: ignore[arg-type]


def test_alexnet_file_is_torchvisions_by_name_and_hash() -> None:
    assert ALEXNET.file_name == "alexnet-owt-7be5be79.pth"
    assert ALEXNET.sha256.startswith("7be5be79")  # torch.hub's check: the name carries the hash's prefix
