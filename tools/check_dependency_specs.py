"""Refuse dependency lines a fresh machine cannot install: local files, file:// URLs, absolute paths, editables.

`pip freeze` writes a package that was installed from a wheel file as ``name @ file:///path/to/it.whl``; such a
line installs only on the machine that froze it (CI passed once only because that machine still had the file).
This check reads ``constraints.txt`` and the dependency lists of ``pyproject.toml`` and prints one line per bad
entry (file, line, entry, what to write instead), exiting 1 if there is any. Standard library only, so it runs
before the venv exists: ``python3 tools/check_dependency_specs.py [REPO_ROOT]``.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# A requirement that names where to get the package rather than a version: a direct reference
# (``name @ URL``), a bare URL or path, or pip's editable flag.
_LOCAL = re.compile(r"(@\s*file:|file://|^\s*-e\b|^\s*--editable\b|(^|[\s@=])(/|~/|\.{1,2}/|[A-Za-z]:[\\/]))")


def problem(entry: str) -> str | None:
    """Why `entry` (one requirement or constraint) cannot install on another machine, or None if it can."""
    text = entry.split("#", 1)[0].strip() if not entry.lstrip().startswith("#") else ""
    if not text:
        return None
    if _LOCAL.search(text):
        if text.startswith(("-e", "--editable")):
            return "an editable install is a folder on this machine"
        return "it points at a file or folder on this machine"
    return None


def pyproject_entries(path: Path) -> list[tuple[int, str]]:
    """(line number, requirement) for every dependency and optional dependency in a pyproject.toml."""
    project = tomllib.loads(path.read_text())["project"]
    wanted = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        wanted.extend(extra)
    lines = path.read_text().splitlines()
    found = []
    for requirement in wanted:
        number = next((i for i, line in enumerate(lines, 1) if requirement in line), 0)
        found.append((number, requirement))
    return found


def check(root: Path) -> list[str]:
    """One message per dependency entry under `root` that a fresh machine cannot install."""
    messages = []
    sources = []
    constraints = root / "constraints.txt"
    if constraints.exists():
        sources.append((constraints, list(enumerate(constraints.read_text().splitlines(), 1))))
    pyproject = root / "pyproject.toml"
    if pyproject.exists():
        sources.append((pyproject, pyproject_entries(pyproject)))
    for path, entries in sources:
        for number, entry in entries:
            why = problem(entry)
            if why:
                messages.append(f"{path.name}:{number}: '{entry.strip()}': {why}; pin a registry version "
                                "(name==version) instead, see the Makefile's 'constraints' target")
    return messages


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1]
    messages = check(root)
    for message in messages:
        print(f"error: {message}", file=sys.stderr)
    return 1 if messages else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
