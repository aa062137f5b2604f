"""Tests for tools/check_dependency_specs.py: no dependency line may point at a file on one machine."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "tools/check_dependency_specs.py"


def run_check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), str(root)], capture_output=True, text=True)


def test_the_repository_pins_registry_versions_only():
    result = run_check(ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize("line", [
    "foo @ file:///tmp/x.whl",
    "ray @ file:///tmp/raywhl/ray-2.60.0-cp311-cp311-manylinux2014_x86_64.whl#sha256=e227",
    "foo@file:/tmp/x.whl",
    "file:///opt/wheels/foo-1.0-py3-none-any.whl",
    "/opt/wheels/foo-1.0-py3-none-any.whl",
    "./vendor/foo",
    "-e .",
    "--editable /work/main",
])
def test_a_local_constraint_fails_with_one_line_naming_it(tmp_path, line):
    good = (ROOT / "constraints.txt").read_text()
    (tmp_path / "constraints.txt").write_text(good + line + "\n")
    result = run_check(tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    number = len(good.splitlines()) + 1
    assert result.stderr.startswith(f"error: constraints.txt:{number}: '{line}': ")


def test_a_local_path_in_pyproject_is_refused_too(tmp_path):
    pyproject = (ROOT / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(pyproject.replace('"scipy>=1.11",', '"scipy @ file:///tmp/scipy.whl",'))
    result = run_check(tmp_path)
    assert result.returncode == 1
    assert "pyproject.toml:" in result.stderr and "scipy @ file:///tmp/scipy.whl" in result.stderr


@pytest.mark.parametrize("line", ["torch==2.14.1", "ray==2.60.0", "# a comment with /tmp/ and file://",
                                  "numpy>=1.24 ; python_version >= '3.11'", "foo @ https://example.org/foo.whl"])
def test_registry_pins_and_comments_pass(tmp_path, line):
    (tmp_path / "constraints.txt").write_text(line + "\n")
    assert run_check(tmp_path).returncode == 0
