"""`python -m devup` and the `devup` console script."""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    try:
        from devup.output import reopen_closed_std_streams

        reopen_closed_std_streams()  # `devup ls 2>&-`: before anything (the fast path too) writes
        os.environ.setdefault("COMPOSE_STATUS_STDOUT", "0")  # as cli.main: CMD of `exec` sees the same
        from devup import fastpath

        code = fastpath.run(sys.argv[1:])
        if code is not None:
            sys.exit(code)
        from devup.cli import main as cli_main

        cli_main()
    except KeyboardInterrupt:
        # Before cli.main's boundary is in place (`path`/`exec`'s fast path, importing the CLI):
        # nothing has been changed yet, and SPEC §2 allows no traceback.
        sys.exit(130)
    finally:
        # The command is over and its exit code decided: a signal that comes while the
        # interpreter shuts down (which restores the default handlers) must not turn it into
        # death by SIGINT (-2). Ignored from here to the exit.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


if __name__ == "__main__":
    main()
