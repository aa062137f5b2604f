from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from aaas_profile.datasets import SAMPLE, build_sample, main
from aaas_profile.images import load_folder

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
