"""Render every command's ``--help`` into docs/cli.md, the CLI reference (``python tools/cli_docs.py``).

The page is generated, never edited by hand: ``tests/cli/test_cli_docs.py`` fails when the committed file differs
from what the commands print, so a changed option shows up as a diff to commit. ``--check`` only compares.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "cli.md"
WIDTH = 100  # columns the help is rendered at: the same on every machine, whatever the terminal
COMMANDS = ([], ["sweep"], ["fit"], ["report"], ["simulate"], ["train"], ["models"], ["models", "import-repaint"])

HEADER = """# Command-line reference

Generated from the commands' own `--help` by `python tools/cli_docs.py` (a test checks that this page is
current; do not edit it by hand). Global options go before the command: `aaas-profile --json fit RUN`.
Shell completion: `aaas-profile --install-completion` (bash, zsh, fish, PowerShell).
"""


def help_text(command: list[str]) -> str:
    """``aaas-profile COMMAND --help`` as printed at ``WIDTH`` columns, without colour."""
    from typer.testing import CliRunner

    from aaas_profile.cli import app

    result = CliRunner().invoke(app, [*command, "--help"], prog_name="aaas-profile",
                                env={"COLUMNS": str(WIDTH), "NO_COLOR": "1", "TERM": "dumb"}, color=False)
    if result.exit_code != 0:
        raise RuntimeError(f"aaas-profile {' '.join(command)} --help failed: {result.output}")
    return "\n".join(line.rstrip() for line in result.output.strip("\n").splitlines())


RANGES = """## Ranges

Every numeric option is checked before a command writes anything; a value outside its range (or NaN, or
infinite) stops the command with one line naming the option. Lists (`--seeds 0-9`, `--steps 10,25`) are
checked item by item, and an item given twice is refused rather than run and aggregated twice (except
`--channels`, where the order is the meaning). Numbers read from files (an ASP table, a profile) are held to
the ranges in docs/simulate.md. The source is each option's declaration in `aaas_profile/options.py`.

| command | option | range |
|---|---|---|
"""


def ranges() -> str:
    """The table of every numeric option's range, from the option declarations (``aaas_profile.options``)."""
    from aaas_profile import options

    rows = []
    for command, ranges in options.RANGES.items():
        for option in ranges:
            each = "each item: " if (command, option) in options.LIST_OPTIONS else ""
            rows.append(f"| {command} | `{options.flag(option)}` | {each}{options.describe(command, option)} |")
    return RANGES + "\n".join(rows) + "\n"


def render() -> str:
    parts = [HEADER]
    for command in COMMANDS:
        title = " ".join(["aaas-profile", *command])
        parts.append(f"## `{title}`\n\n```\n{help_text(command)}\n```\n")
    parts.append(ranges())
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = PAGE.read_text() if PAGE.exists() else ""
        if current != text:
            print(f"{PAGE.relative_to(ROOT)} is out of date: run python tools/cli_docs.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main(sys.argv[1:]))
