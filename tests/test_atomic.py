"""The one atomic-write helper (``aaas_profile/atomic.py``)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from aaas_profile import atomic


def test_write_atomic_leaves_no_temp_file_and_names_the_target(tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    for target, kind in ((folder, IsADirectoryError), (tmp_path / "missing" / "r.html", FileNotFoundError)):
        try:
            atomic.write_atomic(target, "text")
            raise AssertionError("wrote")
        except kind as err:
            assert str(target) in str(err) or str(target.parent) in str(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-folder"] and not list(folder.iterdir())


def test_a_failed_write_keeps_the_old_content_and_no_temp_file(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as temp:
        temp.write_text("half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_two_writers_of_one_file_never_share_a_temp_file(tmp_path):
    target = tmp_path / "fit.json"
    with atomic.atomic_path(target) as first, atomic.atomic_path(target) as second:
        assert first != second and first.parent == second.parent == tmp_path
        assert first.name.startswith(".fit.json.") and first.name.endswith(".tmp")
        first.write_text("first")
        second.write_text("second")
    assert target.read_text() == "first"  # the outer block ends last: its rename wins
    assert [p.name for p in tmp_path.iterdir()] == ["fit.json"]


def test_bytes_text_and_figures(tmp_path):
    atomic.write_atomic(tmp_path / "a.bin", b"\x00\xff")
    atomic.write_atomic(tmp_path / "b.txt", "ω\n", fsync=True)
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\xff"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "ω\n"
    figure, axes = plt.subplots()
    axes.plot([0, 1], [1, 0])
    atomic.save_figure(figure, tmp_path / "c.png")
    plt.close(figure)
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt", "c.png"]
