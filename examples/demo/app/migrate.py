"""Create the demo's schema (idempotent). Run by devup as the pre_spawn hook."""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True  # keep the worktree clean: no __pycache__ next to the app

from common import main_wrapper, pg_connect, retry  # noqa: E402

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id         serial PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    seeded     boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""


def main() -> int:
    with retry("PostgreSQL", pg_connect) as conn:
        # Serialise concurrent runs against the same database.
        conn.execute("SELECT pg_advisory_xact_lock(4242)")
        conn.execute(SCHEMA)
        conn.commit()
    print("migrate: table items is ready")
    return 0


if __name__ == "__main__":
    main_wrapper("migrate", main)
