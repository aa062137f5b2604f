"""docs/cli.md is what the commands print: regenerate it with `python tools/cli_docs.py` when an option changes."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_tool():
    spec = importlib.util.spec_from_file_location("cli_docs", ROOT / "tools" / "cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_cli_reference_is_current():
    tool = load_tool()
    rendered = tool.render()
    assert (ROOT / "docs" / "cli.md").read_text() == rendered, "docs/cli.md is out of date: python tools/cli_docs.py"
    for command in ("## `aaas-profile sweep`", "## `aaas-profile fit`", "## `aaas-profile models import-repaint`"):
        assert command in rendered
    assert "--dry-run" in rendered and "aaas-profile[ray]" in rendered


def test_check_mode_fails_on_a_stale_page(tmp_path, monkeypatch):
    tool = load_tool()
    monkeypatch.setattr(tool, "PAGE", tmp_path / "cli.md")
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    (tmp_path / "cli.md").write_text("old\n")
    assert tool.main(["--check"]) == 1
    assert tool.main([]) == 0 and tool.main(["--check"]) == 0
