"""Shared helpers for the devup demo: connections from DATABASE_URL / REDIS_URL.

Only the standard library is needed to import this module; psycopg (v3) and redis
are imported on first use so that a missing package gives a clear message.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

INSTALL_HINT = "install the demo's dependencies: pip install 'psycopg[binary]' redis"


class DemoError(Exception):
    """A failure with a message meant for the user."""


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (psycopg's span several)."""
    return " ".join(str(exc).split())


def env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise DemoError(f"{name} is not set (devup sets it from [env] in devup.toml)")
    return value


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise DemoError(f"cannot import psycopg ({exc}); {INSTALL_HINT}") from exc
    return psycopg


def _redis() -> Any:
    try:
        import redis
    except ImportError as exc:
        raise DemoError(f"cannot import redis ({exc}); {INSTALL_HINT}") from exc
    return redis


def pg_connect(timeout: float = 3.0) -> Any:
    """One connection attempt to DATABASE_URL (autocommit off)."""
    psycopg = _psycopg()
    return psycopg.connect(env("DATABASE_URL"), connect_timeout=max(1, int(timeout)))


def redis_client(timeout: float = 3.0) -> Any:
    """A Redis client for REDIS_URL that has answered PING."""
    redis = _redis()
    client = redis.Redis.from_url(
        env("REDIS_URL"),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
    )
    client.ping()
    return client


def retry(what: str, connect: Callable[[], T], deadline_s: float = 10.0) -> T:
    """Call connect() until it succeeds or deadline_s has passed; raise DemoError then."""
    end = time.monotonic() + deadline_s
    delay = 0.2
    attempt = 0
    while True:
        attempt += 1
        try:
            return connect()
        except DemoError:
            raise
        except Exception as exc:
            if time.monotonic() + delay > end:
                raise DemoError(
                    f"cannot connect to {what} after {attempt} attempts "
                    f"in {deadline_s:.0f}s: {type(exc).__name__}: {one_line(exc)}"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def main_wrapper(name: str, fn: Callable[[], int]) -> None:
    """Run a script's main: DemoError and other failures -> message on stderr, exit 1."""
    try:
        code = fn()
    except DemoError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        print(f"{name}: error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code)
