"""VGG19 weight files: hash check, torch.hub cache, env override, "auto" fallback, download (faked)."""

from __future__ import annotations

import hashlib
import urllib.error
import warnings
from pathlib import Path

import pytest
import torch

from ttsr_lightning import pretrained
from ttsr_lightning.pretrained import (
    VGG19_ENV_VAR,
    VGG19_SHA256,
    VGG19_URL,
    load_vgg19_state_dict,
    sha256_of_file,
    vgg19_cache_path,
)


def fake_vgg19_state_dict() -> dict[str, torch.Tensor]:
    """torchvision-layout VGG19 entries up to conv3_1 (features.10) plus one classifier entry."""
    generator = torch.Generator().manual_seed(0)
    shapes = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128)}
    state_dict = {}
    for index, (out_channels, in_channels) in shapes.items():
        state_dict[f"features.{index}.weight"] = torch.randn(
            out_channels, in_channels, 3, 3, generator=generator
        )
        state_dict[f"features.{index}.bias"] = torch.randn(out_channels, generator=generator)
    state_dict["classifier.6.bias"] = torch.randn(1000, generator=generator)
    return state_dict


def write_fake_vgg19(path: Path) -> str:
    """Saves :func:`fake_vgg19_state_dict` at ``path``; returns its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fake_vgg19_state_dict(), path)
    return sha256_of_file(path)


@pytest.fixture
def no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch.hub dir (via TORCH_HOME) and no TTSR_VGG19_WEIGHTS; returns the cache path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(VGG19_ENV_VAR, raising=False)
    return vgg19_cache_path()


def test_cache_path_is_torch_hub_style(no_cache: Path, tmp_path: Path) -> None:
    assert no_cache == tmp_path / "torch_home" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    assert VGG19_SHA256.startswith("dcbb9e9d")


def test_sha256_streams_files_larger_than_one_chunk(tmp_path: Path) -> None:
    data = bytes(range(256)) * (10 * 1024 + 7)  # 2.5 MiB + 1.75 KiB: several 1 MiB chunks
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_of_file(path) == hashlib.sha256(data).hexdigest()


def test_file_path_loads_torchvision_keys(tmp_path: Path) -> None:
    path = tmp_path / "vgg.pth"
    sha256 = write_fake_vgg19(path)
    state_dict = load_vgg19_state_dict(path, expected_sha256=sha256)
    assert state_dict is not None
    expected = fake_vgg19_state_dict()
    assert set(state_dict) == set(expected)
    assert torch.equal(state_dict["features.10.weight"], expected["features.10.weight"])


def test_corrupt_file_error_names_path_and_expected_hash(tmp_path: Path) -> None:
    path = tmp_path / "vgg.pth"
    write_fake_vgg19(path)
    with pytest.raises(ValueError) as error:
        load_vgg19_state_dict(path)
    assert str(path) in str(error.value)
    assert VGG19_SHA256 in str(error.value)


def test_missing_file_error_names_path_and_expected_hash(tmp_path: Path) -> None:
    path = tmp_path / "absent.pth"
    with pytest.raises(FileNotFoundError) as error:
        load_vgg19_state_dict(path, expected_sha256="ab" * 32)
    assert str(path) in str(error.value)
    assert "ab" * 32 in str(error.value)


def test_random_gives_no_weights_and_no_warning(no_cache: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_vgg19_state_dict("random") is None


def test_auto_without_file_warns_once_and_falls_back_to_random(no_cache: Path) -> None:
    with pytest.warns(UserWarning) as record:
        assert load_vgg19_state_dict("auto") is None
    assert len(record) == 1
    assert "RANDOM" in str(record[0].message)
    assert str(no_cache) in str(record[0].message)
    assert not no_cache.exists()  # "auto" never downloads


@pytest.mark.parametrize("spec", ["auto", "imagenet"])
def test_cached_file_is_used(no_cache: Path, spec: str) -> None:
    sha256 = write_fake_vgg19(no_cache)
    state_dict = load_vgg19_state_dict(spec, expected_sha256=sha256)
    assert state_dict is not None
    assert torch.equal(state_dict["features.0.bias"], fake_vgg19_state_dict()["features.0.bias"])


@pytest.mark.parametrize("spec", ["auto", "imagenet"])
def test_env_var_file_takes_precedence_and_is_checked(
    no_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str
) -> None:
    env_path = tmp_path / "elsewhere" / "vgg19.pth"
    sha256 = write_fake_vgg19(env_path)
    no_cache.parent.mkdir(parents=True)
    no_cache.write_bytes(b"not a checkpoint")
    monkeypatch.setenv(VGG19_ENV_VAR, str(env_path))
    assert load_vgg19_state_dict(spec, expected_sha256=sha256) is not None
    monkeypatch.setenv(VGG19_ENV_VAR, str(tmp_path / "missing.pth"))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_vgg19_state_dict(spec, expected_sha256=sha256)


def test_imagenet_downloads_once_into_the_cache(no_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_source = no_cache.parent.parent / "source.pth"
    sha256 = write_fake_vgg19(fake_source)
    calls = []

    def fake_download(url: str, destination: str, progress: bool = True) -> None:
        calls.append((url, destination))
        Path(destination).write_bytes(fake_source.read_bytes())

    monkeypatch.setattr(pretrained, "download_url_to_file", fake_download)
    assert load_vgg19_state_dict("imagenet", expected_sha256=sha256) is not None
    assert load_vgg19_state_dict("imagenet", expected_sha256=sha256) is not None
    assert calls == [(VGG19_URL, str(no_cache))]


def test_imagenet_bad_download_is_removed(no_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_download(url: str, destination: str, progress: bool = True) -> None:
        Path(destination).write_bytes(b"truncated")

    monkeypatch.setattr(pretrained, "download_url_to_file", fake_download)
    with pytest.raises(ValueError, match=VGG19_SHA256):
        load_vgg19_state_dict("imagenet")
    assert not no_cache.exists()


def test_imagenet_offline_error_says_what_to_do(no_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, destination: str, progress: bool = True) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(pretrained, "download_url_to_file", offline)
    with pytest.raises(RuntimeError) as error:
        load_vgg19_state_dict("imagenet")
    message = str(error.value)
    assert VGG19_URL in message and str(no_cache) in message and VGG19_ENV_VAR in message
