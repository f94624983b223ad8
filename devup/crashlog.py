"""The crash log: where an unexpected error's traceback goes, for a bug report."""

from __future__ import annotations

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
