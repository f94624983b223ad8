"""Seed the demo's data (idempotent); `--undo` removes exactly what seeding adds.

Run by devup as the post_up hook; its undo runs when the session is rolled back.
"""

from __future__ import annotations

import argparse
import sys

sys.dont_write_bytecode = True  # keep the worktree clean: no __pycache__ next to the app

from common import main_wrapper, pg_connect, redis_client, retry  # noqa: E402

ITEMS = ["apples", "bread", "coffee"]
COUNTER_KEY = "demo:visits"


def seed() -> int:
    with retry("PostgreSQL", pg_connect) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO items (name, seeded) VALUES (%s, true) ON CONFLICT (name) DO NOTHING",
                [(name,) for name in ITEMS],
            )
        conn.commit()
    client = retry("Redis", redis_client)
    client.set(COUNTER_KEY, 0, nx=True)
    print(f"seed: {len(ITEMS)} items present, visit counter initialised")
    return 0


def undo() -> int:
    with retry("PostgreSQL", pg_connect) as conn:
        exists = conn.execute("SELECT to_regclass('public.items') IS NOT NULL").fetchone()
        removed = 0
        if exists and exists[0]:
            cur = conn.execute("DELETE FROM items WHERE seeded")
            removed = cur.rowcount
        conn.commit()
    client = retry("Redis", redis_client)
    client.delete(COUNTER_KEY)
    print(f"seed --undo: removed {removed} seeded items and the visit counter")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--undo", action="store_true", help="remove the seeded data")
    args = parser.parse_args()
    return undo() if args.undo else seed()


if __name__ == "__main__":
    main_wrapper("seed", main)
