"""``fit.json``: its schema version, the one reader and the writer (format: docs/fit-json.md).

Every program part that reads a fit.json (``report``, ``simulate --profile``, the tests) reads it through
:func:`load`, which checks ``schema_version`` against ``READABLE_VERSIONS`` and says in one line what is wrong.
This module imports nothing of the fit itself (no torch, piq or matplotlib), so the simulator can read a
profile cheaply; the document's content is built by ``fitrun.build_document``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from aaas_profile.atomic import write_atomic
from aaas_profile.errors import UserError, not_found

SCHEMA_VERSION = 3  # 2: per-image offsets, r2 an object, flags, effect, stop, median_fit; 3: effect is Page's
# trend test, stop is noise-aware with an interval, recommendations
READABLE_VERSIONS = (1, 2, 3)  # versions 1 (no offsets, r2 a number) and 2 are still read by report and simulate
NAME = "fit.json"


class FitFileError(UserError, ValueError):
    """A fit.json that cannot be read (missing, not JSON, an unknown schema version); the message is one line."""


def clean(value):
    """JSON-safe: numpy scalars to Python, NaN/inf to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [clean(v) for v in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def write(path: Path, document: dict) -> None:
    """Write ``document`` as JSON atomically (temp file, then rename; nothing left behind on failure)."""
    write_atomic(Path(path), json.dumps(clean(document), indent=2, allow_nan=False) + "\n")


def load(path: Path) -> dict:
    """Read a fit.json (``path`` may be the run folder that holds it). Raises FitFileError in one line when it
    is missing, unreadable, not a JSON object, or of a ``schema_version`` not in ``READABLE_VERSIONS``."""
    path = Path(path)
    if path.is_dir():
        path = path / NAME
    if not path.is_file():
        raise FitFileError(not_found(path, "fit.json", folder=False,
                                     hint="`aaas-profile fit RUN` writes RUN/fit.json"))
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise FitFileError(f"{path}: cannot read fit.json ({err})") from None
    except json.JSONDecodeError as err:
        raise FitFileError(f"{path}: cannot read fit.json, not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(document, dict):
        raise FitFileError(f"{path}: cannot read fit.json, it holds a JSON {type(document).__name__}, not an object")
    version = document.get("schema_version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise FitFileError(f"{path}: fit.json schema_version {version!r}, this aaas-profile reads "
                           f"{', '.join(map(str, READABLE_VERSIONS))}")
    return document
