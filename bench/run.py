"""devup performance benchmark: devup against the equivalent raw commands, in the same run.

Run from the repository root:  .venv/bin/python bench/run.py [--rounds N] [--json FILE] [--engine podman]

It is a measurement, not a test: it prints a table of ratios against the targets and exits 0
whatever they say. It exits 1 only when the bench itself could not measure (a command it needs
failed) or could not clean up after itself. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import tempfile
from pathlib import Path

from kit import proc
from kit.cleanup import cleanup
from kit.proc import BenchBroken, log
from kit.project import Ctx, devup_version, preflight, setup
from kit.report import print_report
from kit.rounds import Samples, measure


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median reported; default 3)")
    parser.add_argument("--startup-runs", type=int, default=10, help="runs per startup command (default 10)")
    parser.add_argument(
        "--noop-runs", type=int, default=3, help="`up` of an up session per round (default 3)"
    )
    parser.add_argument("--ls-runs", type=int, default=5, help="`ls` runs per round (default 5)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up cycle")
    parser.add_argument(
        "--importtime",
        action="store_true",
        help="also show where import time goes: `devup --help`, `ls` (20 sessions), `up` of an up session",
    )
    parser.add_argument("--json", metavar="FILE", help="write the samples and results to FILE")
    parser.add_argument(
        "--engine",
        choices=("docker", "podman"),
        default="docker",
        help="the engine both sides run on (podman: DOCKER_HOST=--podman-socket for devup and the raw commands)",
    )
    parser.add_argument(
        "--podman-socket",
        default="unix:///run/podman/podman.sock",
        help="Podman's API socket (default unix:///run/podman/podman.sock)",
    )
    opts = parser.parse_args(argv)
    if opts.rounds < 1:
        parser.error("--rounds must be at least 1")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    if opts.engine == "podman":
        # Before anything reads the environment: devup, compose, the docker CLI and SDK of both
        # sides inherit it.
        os.environ["DOCKER_HOST"] = opts.podman_socket
        os.environ.pop("DOCKER_CONTEXT", None)
    proc.ENGINE = opts.engine
    version = devup_version()
    tmp = Path(tempfile.mkdtemp(prefix="devup-bench-"))
    ctx: Ctx | None = None
    samples = Samples()
    code = 0
    extra: dict[str, object] = {}
    try:
        preflight()
        ctx = setup(tmp)
        log(f"bench: project {ctx.project} in {tmp} (devup: {shlex.join(ctx.devup)})")
        measure(ctx, opts, samples, extra)
    except KeyboardInterrupt:
        log("bench: interrupted; cleaning up")
        code = 130
    except BenchBroken as exc:
        log(f"bench: broken: {exc}")
        code = 1
    finally:
        problems = cleanup(ctx, tmp, quiet=False)
        for p in problems:
            log(f"bench: CLEANUP PROBLEM: {p}")
        if problems and code == 0:
            code = 1
    if code == 130:
        return code

    return print_report(opts, samples, ctx, extra, version, code)


if __name__ == "__main__":
    sys.exit(main())
