from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from aaas_profile.datasets import (
    FACES_LICENCE,
    SAMPLE,
    SCENES_EVAL,
    SCENES_LICENCE,
    build_faces,
    build_sample,
    build_scenes,
    data_licence,
    main,
)
from aaas_profile.datasets import SCENES as SCENES_ITEMS
from aaas_profile.images import list_images, load_folder

COMMITTED = Path(__file__).resolve().parents[1] / "datasets" / "sample"


def test_build_reproduces_the_committed_sample(tmp_path):
    written = build_sample(tmp_path, size=256)
    names = sorted(p.name for p in written)
    assert names == sorted(item.file for item in SAMPLE) == sorted(p.name for p in COMMITTED.glob("*.png"))
    for name in names:
        built, committed = PILImage.open(tmp_path / name), PILImage.open(COMMITTED / name)
        assert built.mode == committed.mode == "RGB"
        assert built.size == committed.size == (256, 256)
        # Lanczos in another Pillow version may round a few values differently, no more.
        diff = np.abs(np.asarray(built, dtype=int) - np.asarray(committed, dtype=int))
        assert diff.max() <= 2
    provenance = (tmp_path / "PROVENANCE.md").read_text()
    assert all(f"## {name}" in provenance for name in names)
    assert sum((COMMITTED / n).stat().st_size for n in names) < 1_500_000


def test_load_folder_reads_the_sample():
    images = load_folder(COMMITTED, 64)
    assert [im.image_id for im in images] == sorted(item.file for item in SAMPLE)
    assert all(im.tensor.shape == (3, 64, 64) for im in images)
    assert all(0.05 < im.tensor.std().item() for im in images)  # real pictures, not blank files


def test_command_line_other_size(tmp_path, capsys):
    assert main(["sample", "--out", str(tmp_path / "s"), "--size", "32"]) == 0
    assert "wrote 8 images" in capsys.readouterr().out
    assert {PILImage.open(p).size for p in (tmp_path / "s").glob("*.png")} == {(32, 32)}


# ---- training sets --------------------------------------------------------------------------------------------

FACES = Path(__file__).resolve().parents[1] / "datasets" / "faces"
SCENES = Path(__file__).resolve().parents[1] / "datasets" / "scenes"


def _pngs(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))


def test_faces_build_reproduces_the_committed_set_exactly(tmp_path):
    written = build_faces(tmp_path)
    assert len(written) == 100
    assert _pngs(tmp_path) == _pngs(FACES)
    assert len(list_images(tmp_path)) == 90 and len(list_images(tmp_path / "eval")) == 10
    assert sorted(p.name for p in (tmp_path / "eval").glob("*.png"))[:2] == ["lfw_009.png", "lfw_019.png"]
    for name in _pngs(FACES):
        built, committed = PILImage.open(tmp_path / name), PILImage.open(FACES / name)
        assert built.mode == committed.mode == "L" and built.size == (25, 25)
        assert np.array_equal(np.asarray(built), np.asarray(committed))  # pixels copied, never resampled
    faces = np.stack([np.asarray(PILImage.open(p)) for p in written]).astype(float)
    assert faces.std(axis=(1, 2)).min() > 10  # real photographs, none blank
    assert data_licence(tmp_path) == data_licence(FACES) == FACES_LICENCE
    assert "lfw_subset.npy" in (tmp_path / "PROVENANCE.md").read_text()


def test_scenes_build_reproduces_the_committed_set(tmp_path):
    pytest.importorskip("sklearn", reason="two scenes images ship inside scikit-learn")
    written = build_scenes(tmp_path, size=128)
    assert _pngs(tmp_path) == _pngs(SCENES) and len(written) == len(SCENES_ITEMS)
    assert sorted(p.name for p in (tmp_path / "eval").glob("*.png")) == sorted(SCENES_EVAL)
    provenance = (tmp_path / "PROVENANCE.md").read_text()
    for name in _pngs(SCENES):
        built, committed = PILImage.open(tmp_path / name), PILImage.open(SCENES / name)
        assert built.mode == committed.mode == "RGB" and min(built.size) == 128 and built.size == committed.size
        diff = np.abs(np.asarray(built, dtype=int) - np.asarray(committed, dtype=int))
        assert diff.max() <= 2
        assert f"## {name}" in provenance
    # Whole pictures, aspect kept: the 512 x 512 textures are square, china.jpg (640 x 427) is not.
    assert PILImage.open(tmp_path / "china.png").size == (192, 128)
    assert data_licence(tmp_path) == SCENES_LICENCE
    assert sum(p.stat().st_size for p in SCENES.rglob("*.png")) < 1_000_000


def test_data_licence_reads_only_the_licence_line(tmp_path):
    assert data_licence(tmp_path) is None
    (tmp_path / "PROVENANCE.md").write_text("# x\n\nLicence: CC0-1.0\n\nlicence: not this one\n")
    assert data_licence(tmp_path) == "CC0-1.0"


def test_command_line_faces(tmp_path, capsys):
    assert main(["faces", "--out", str(tmp_path / "f")]) == 0
    assert "wrote 100 images" in capsys.readouterr().out
