"""Bad image files: each raises ImageError naming the file, or is converted with one log line."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from ttsr_lightning.data import ImageError
from ttsr_lightning.data.image_io import RGBImageReader, list_images

Photo = Callable[[str, int, int, int, int], Image.Image]


@pytest.fixture
def png(tmp_path: Path, photo: Photo) -> Path:
    path = tmp_path / "photo.png"
    photo("coffee", 100, 100, 64, 64).save(path)
    return path


def test_rgb_png_is_read_unchanged(png: Path) -> None:
    image = RGBImageReader("test").read(png)
    assert image.mode == "RGB" and np.array_equal(np.asarray(image), np.asarray(Image.open(png)))


def test_truncated_png_names_the_file(png: Path) -> None:
    data = png.read_bytes()
    png.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"photo\.png: cannot decode image"):
        RGBImageReader("test").read(png)


def test_truncated_jpeg_names_the_file(tmp_path: Path, photo: Photo) -> None:
    path = tmp_path / "photo.jpg"
    photo("coffee", 100, 100, 64, 64).save(path, quality=95)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ImageError, match=r"photo\.jpg: cannot decode image"):
        RGBImageReader("test").read(path)


def test_not_an_image_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not a PNG")
    with pytest.raises(
        ImageError, match=r"notes\.png: cannot decode image .*expected a readable PNG/JPEG/BMP"
    ):
        RGBImageReader("test").read(path)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"gone\.png: file not found"):
        RGBImageReader("test").read(tmp_path / "gone.png")


def test_grayscale_and_rgba_are_converted_with_one_warning_per_mode(
    tmp_path: Path, photo: Photo, caplog: pytest.LogCaptureFixture
) -> None:
    rgb = photo("coffee", 100, 100, 32, 32)
    gray, rgba = rgb.convert("L"), rgb.convert("RGBA")
    for index in range(2):
        gray.save(tmp_path / f"gray{index}.png")
        rgba.save(tmp_path / f"rgba{index}.png")
    reader = RGBImageReader("Toy")
    with caplog.at_level(logging.WARNING, logger="ttsr_lightning.data.image_io"):
        images = {path.stem: reader.read(path) for path in list_images(tmp_path)}
    assert all(image.mode == "RGB" for image in images.values())
    replicated = np.asarray(images["gray0"])
    assert np.array_equal(replicated[..., 0], np.asarray(gray)) and np.array_equal(
        replicated[..., 2], np.asarray(gray)
    )
    assert np.array_equal(np.asarray(images["rgba1"]), np.asarray(rgb))  # alpha dropped, colours kept
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert "Toy: converting L images to RGB (first one:" in messages[0] and "gray0.png" in messages[0]
    assert "converting RGBA images" in messages[1] and "rgba0.png" in messages[1]


def test_sixteen_bit_images_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    with pytest.raises(
        ImageError, match=r"deep\.png: 16 bits per channel \(I;16\); expected 8 bits per channel"
    ):
        RGBImageReader("test").read(path)


def test_list_images_skips_hidden_and_non_image_files_only(tmp_path: Path) -> None:
    for name in ("b.png", "a.JPG", "c.bmp", ".hidden.png", "Thumbs.db", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    assert [path.name for path in list_images(tmp_path)] == ["a.JPG", "b.png", "c.bmp"]


def test_a_bounded_read_shrinks_to_the_longer_side_and_refuses_too_many_pixels(tmp_path: Path) -> None:
    photo = Image.fromarray(skimage.data.astronaut()).crop((0, 0, 512, 384))
    jpeg, png = tmp_path / "photo.jpg", tmp_path / "photo.png"
    photo.save(jpeg, quality=95)
    photo.save(png)
    reader = RGBImageReader("photos")
    shrunk = reader.read(jpeg, longest_side=100)  # decoded at 1/4 (128 x 96), then shrunk
    assert shrunk.size == (100, 75) and shrunk.mode == "RGB"
    expected = np.asarray(photo.resize((100, 75), Image.Resampling.LANCZOS), dtype=np.float64)
    assert np.abs(np.asarray(shrunk, dtype=np.float64) - expected).mean() < 3
    assert reader.read(png, longest_side=1000).size == (512, 384)  # never enlarged
    assert reader.read(jpeg, longest_side=100, max_pixels=128 * 96).size == (100, 75)  # counted after 1/4
    with pytest.raises(
        ImageError, match=r"photo\.png: 512x384 pixels to decode, more than max_pixels=100000"
    ):
        reader.read(png, longest_side=100, max_pixels=100_000)
