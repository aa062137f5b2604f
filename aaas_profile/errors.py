"""What every command's failures have in common: one base class for bad input, one line for a file-system error,
and a check that a folder can be written before a command changes anything in it.

Each stage module keeps its own error class (``SweepError``, ``FitError``, ``SimError`` ...) and derives it from
:class:`UserError`; the command line (``aaas_profile/cli/__init__.py``, the one place that catches them) turns
any ``UserError`` or ``OSError`` that reaches it into one line on stderr and a non-zero exit, so no command shows
a traceback for a user's mistake. Commands raise these too (for a bad option), rather than exiting themselves.
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path


class UserError(Exception):
    """Input or a situation the user can fix; the message is one line that says what is wrong and what to do."""

    exit_code = 2  # the shell's "misuse" code, as typer uses for a bad option


class Interrupted(UserError):
    """The user pressed Ctrl-C: the message says what was kept and how to go on."""

    exit_code = 130  # 128 + SIGINT, what a shell reports for a process ended by Ctrl-C


# What to do about the common causes, by errno (the cause itself comes from the OS's strerror).
_ADVICE = {
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "the file system is read-only: choose a path on a writable one",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "it is a folder: give a file name",
    errno.EEXIST: "remove it or choose another path",
    errno.ENOSPC: "the disk is full: free space or choose another path",
    errno.EDQUOT: "the disk quota is exceeded: free space or choose another path",
    errno.ENAMETOOLONG: "choose a shorter path",
}


def os_error_line(err: OSError) -> str:
    """One line for an ``OSError``: the path(s), the cause, and what to do about it."""
    cause = err.strerror or str(err) or type(err).__name__
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    where = " → ".join(paths) if paths else "file system"
    advice = _ADVICE.get(err.errno or 0)
    return f"{where}: {cause}" + (f" ({advice})" if advice else "")


def check_writable(folder: Path, what: str = "output folder") -> None:
    """Raise ``UserError`` unless files can be created in ``folder`` (or, when it does not exist yet, in the
    nearest existing folder above it, where it would be made).

    A real probe (create and delete a hidden file), not ``os.access``: that is what writing will meet, for
    any user (root ignores permission bits but not a read-only mount) and any file system.
    """
    folder = Path(folder)
    target = folder
    while not target.exists():
        if target.parent == target:
            break
        target = target.parent
    if target.exists() and not target.is_dir():
        raise UserError(f"{folder}: {target} is a file, not a folder; choose another {what}")
    probe = target / f".aaas-write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as err:
        cause = (err.strerror or type(err).__name__).lower()
        raise UserError(f"{folder}: cannot write in {target} ({cause}); choose another {what} or make it "
                        "writable") from None
    os.close(fd)
    os.unlink(probe)


def not_found(path: Path, what: str, folder: bool, hint: str = "") -> str:
    """One line for a path that is not the folder (``folder=True``) or file the user meant: says which of
    missing / a file where a folder is needed / a folder where a file is needed, and what to do."""
    path = Path(path)
    if folder and path.exists():
        message = f"{path} is a file, not a folder: give the {what} (the folder that holds the files)"
    elif not folder and path.is_dir():
        message = f"{path} is a folder, not a file: give the {what} itself"
    else:
        message = f"{path}: {what} does not exist; check the path"
    return message + (f" ({hint})" if hint else "")
