"""The crash log: where an unexpected error's traceback goes, for a bug report."""

from __future__ import annotations

import errno
import sys
import traceback
from pathlib import Path

from devup import __version__, paths


def write(exc: BaseException) -> Path | None:
    """Append `exc`'s traceback to the crash log; None when even that is impossible (a full
    disk): the caller's message must not depend on it."""
    log = paths.state_root() / "crash.log"
    try:
        paths.ensure_dir(log.parent)
        with open(log, "a", encoding="utf-8") as f:
            text = "".join(traceback.format_exception(exc))
            f.write(f"--- devup {__version__}: {' '.join(sys.argv)}\n{text}\n")
    except OSError:
        return None
    return log


# A disk that is full or read-only is the machine's state, not a bug in devup: no crash log.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def describe(exc: Exception) -> tuple[str, str]:
    """The message and hint for an error no command handled: a full or read-only disk said as
    such; anything else as a bug, with the crash log (or why there is none)."""
    if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
        where = f" {exc.filename}" if exc.filename else ""
        return (
            f"cannot write{where}: {exc.strerror}",
            "make room on that disk (or remount it read-write), then run the command again; "
            "`devup recover` finishes a run this left unfinished",
        )
    log = write(exc)
    details = (
        f"details in {log}" if log else "no crash log could be written (the state folder is not writable)"
    )
    return f"unexpected error: {type(exc).__name__}: {exc}", f"{details}; please report it"
