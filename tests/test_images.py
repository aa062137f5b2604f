import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from aaas_profile.images import Image, ImageError, load_folder, load_image, min_side, pil_to_rgb

R = 32


def save(path, im: PILImage.Image, **kwargs):
    im.save(path, **kwargs)
    return path


def flat(mode: str, colour, size=(40, 40)) -> PILImage.Image:
    return PILImage.new(mode, size, colour)


@pytest.mark.parametrize(
    ("name", "im", "rgb"),
    [
        ("rgb.png", flat("RGB", (255, 0, 0)), (1.0, 0.0, 0.0)),
        ("grey.png", flat("L", 51), (0.2, 0.2, 0.2)),
        ("bits.bmp", flat("1", 1), (1.0, 1.0, 1.0)),
        ("cmyk.jpg", flat("CMYK", (0, 255, 255, 0)), (1.0, 0.0, 0.0)),  # no black ink, full M + Y: red
        ("upper.JPEG", flat("RGB", (0, 0, 255)), (0.0, 0.0, 1.0)),
        ("palette.png", flat("RGB", (0, 255, 0)).convert("P"), (0.0, 1.0, 0.0)),
    ],
)
def test_modes_without_alpha(tmp_path, name, im, rgb):
    x = load_image(save(tmp_path / name, im), R)
    assert x.shape == (3, R, R) and x.dtype == torch.float32
    atol = 0.03 if name.lower().endswith((".jpg", ".jpeg")) else 1e-3
    assert torch.allclose(x.mean(dim=(1, 2)), torch.tensor(rgb), atol=atol)


def test_alpha_is_composited_onto_white(tmp_path):
    rgba = flat("RGBA", (0, 0, 0, 0))
    rgba.paste((0, 0, 0, 255), (0, 0, 20, 40))  # left half opaque black, right half transparent black
    x = load_image(save(tmp_path / "rgba.png", rgba), 40)
    assert x[:, :, :19].max() < 0.02 and x[:, :, 21:].min() > 0.98
    half = load_image(save(tmp_path / "la.png", flat("LA", (0, 128))), R)
    assert torch.allclose(half, torch.full_like(half, 1 - 128 / 255), atol=1e-3)


def test_palette_with_transparency(tmp_path):
    p = flat("P", 0)
    p.putpalette([0, 0, 0] * 256)
    p.info["transparency"] = 0
    x = load_image(save(tmp_path / "p.png", p, transparency=0), R)
    assert x.min() > 0.98  # the transparent palette entry becomes white


def test_16_bit_grey_uses_real_bit_depth(tmp_path):
    a = np.full((40, 40), 32768, dtype=np.uint16)
    path = save(tmp_path / "grey16.png", PILImage.fromarray(a))
    assert PILImage.open(path).mode == "I;16"
    x = load_image(path, R)
    assert x.mean().item() == pytest.approx(32768 / 65535, abs=1e-4)  # PIL's convert("L") would clip to 1.0
    # 16-bit precision survives: 1000 / 65535 is not a multiple of 1 / 255
    b = np.full((40, 40), 1000, dtype=np.uint16)
    y = load_image(save(tmp_path / "dark16.png", PILImage.fromarray(b)), R)
    assert y.mean().item() == pytest.approx(1000 / 65535, abs=1e-5)


def test_int32_and_float_modes():
    i = PILImage.fromarray(np.full((4, 4), 32768, dtype=np.int32))
    assert i.mode == "I"
    assert np.allclose(pil_to_rgb(i), 32768 / 65535, atol=1e-6)
    f = PILImage.fromarray(np.array([[-0.5, 0.25], [0.75, 2.0]], dtype=np.float32))
    assert f.mode == "F"
    assert np.allclose(pil_to_rgb(f)[..., 0], [[0.0, 0.25], [0.75, 1.0]])


def test_resize_shorter_side_and_centre_crop_keep_orientation(tmp_path):
    # 200 x 100 (w x h): red and blue bands outside the centre 100 x 100 square, which is white with a
    # green top-left quarter.
    a = np.zeros((100, 200, 3), dtype=np.uint8)
    a[:, :50] = (255, 0, 0)  # outside the centre square (columns 50..150): must be cropped away
    a[:, 150:] = (0, 0, 255)  # likewise
    a[:, 50:150] = (255, 255, 255)
    a[:50, 50:100] = (0, 255, 0)  # top-left quarter of the centre square
    x = load_image(save(tmp_path / "wide.png", PILImage.fromarray(a)), R)
    assert x.shape == (3, R, R)
    assert x[1].min() > 0.9  # every centre-square pixel has full green; red/blue edges were cropped away
    top_left, bottom_right = x[:, 4, 4], x[:, R - 4, R - 4]
    assert torch.allclose(top_left, torch.tensor([0.0, 1.0, 0.0]), atol=0.02)  # not flipped or transposed
    assert torch.allclose(bottom_right, torch.tensor([1.0, 1.0, 1.0]), atol=0.02)


def test_upscale_within_limit_and_exif_orientation(tmp_path):
    small = flat("RGB", (10, 20, 30), size=(min_side(64), 30))
    assert load_image(save(tmp_path / "small.png", small), 64).shape == (3, 64, 64)
    a = np.zeros((40, 40, 3), dtype=np.uint8)
    a[:20] = 255  # top half white as stored
    exif = PILImage.Exif()
    exif[0x0112] = 3  # rotate 180: displayed with the white half at the bottom
    x = load_image(save(tmp_path / "rot.jpg", PILImage.fromarray(a), exif=exif), R)
    assert x[:, : R // 2 - 2].mean() < 0.05 and x[:, R // 2 + 2 :].mean() > 0.95


def test_load_folder_sorted_ids_and_limit(tmp_path):
    for name in ["b.png", "a.JPG", "c.bmp"]:
        save(tmp_path / name, flat("RGB", (0, 0, 0)))
    (tmp_path / "readme.txt").write_text("ignored")
    (tmp_path / ".hidden.png").write_bytes(b"junk")  # hidden files are ignored
    (tmp_path / "sub").mkdir()
    save(tmp_path / "sub" / "d.png", flat("RGB", (0, 0, 0)))  # subfolders are ignored
    images = load_folder(tmp_path, R)
    assert [im.image_id for im in images] == ["a.JPG", "b.png", "c.bmp"]
    assert all(isinstance(im, Image) and im.tensor.shape == (3, R, R) for im in images)
    assert [im.image_id for im in load_folder(tmp_path, R, limit=2)] == ["a.JPG", "b.png"]


def test_folder_errors(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        load_folder(tmp_path / "nope", R)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ImageError, match="no images"):
        load_folder(tmp_path, R)
    save(tmp_path / "ok.png", flat("RGB", (0, 0, 0)))
    with pytest.raises(ImageError, match="at least 1"):
        load_folder(tmp_path, R, limit=0)


def test_bad_files_are_named(tmp_path):
    save(tmp_path / "a_ok.png", flat("RGB", (0, 0, 0), size=(64, 64)))
    (tmp_path / "b_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    save(tmp_path / "c_tiny.png", flat("RGB", (0, 0, 0), size=(1, 1)))
    with pytest.raises(ImageError) as info:
        load_folder(tmp_path, 256)
    message = str(info.value)
    assert "b_corrupt.png: cannot read image" in message and "1 more" in message and "\n" not in message

    with pytest.raises(ImageError, match=r"c_tiny\.png: 1x1 px is too small .* at least 64 px"):
        load_image(tmp_path / "c_tiny.png", 256)
    with pytest.raises(ImageError, match="at least 16 px"):
        load_image(save(tmp_path / "d.png", flat("RGB", (0, 0, 0), size=(15, 100))), 32)


def test_truncated_file(tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    path = save(tmp_path / "t.jpg", PILImage.fromarray(noise))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"t\.jpg: cannot read image"):
        load_image(path, R)
