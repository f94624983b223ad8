"""`python -m devup` and the `devup` console script."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("COMPOSE_STATUS_STDOUT", "0")  # as cli.main: CMD of `exec` sees the same
    from devup import fastpath

    try:
        code = fastpath.run(sys.argv[1:])
    except KeyboardInterrupt:  # `path`/`exec` before typer loads: the same 130 as every command
        sys.exit(130)
    if code is not None:
        sys.exit(code)
    from devup.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
