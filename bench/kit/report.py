"""The table of ratios against the targets, and the rest of the printed report."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from kit.proc import LS_SESSIONS, Ran, tail
from kit.project import Ctx
from kit.rounds import Samples


@dataclass
class Row:
    metric: str
    devup: float | None
    raw: float | None
    kind: str  # "ratio" | "abs" | "overhead"
    limit: float
    note: str = ""

    @property
    def value(self) -> float | None:
        if self.devup is None:
            return None
        if self.kind == "ratio":
            return self.devup / self.raw if self.raw else None
        if self.kind == "overhead":
            return self.devup - self.raw if self.raw is not None else None
        return self.devup

    @property
    def passed(self) -> bool | None:
        v = self.value
        return None if v is None else v <= self.limit

    def target(self) -> str:
        return {
            "ratio": f"<= {self.limit:.2f}x",
            "abs": f"< {self.limit:.2f} s",
            "overhead": f"<= +{self.limit:.2f} s",
        }[self.kind]

    def cells(self) -> list[str]:
        def s(x: float | None) -> str:
            return "-" if x is None else f"{x:.3f} s"

        v = self.value
        ratio = "-"
        if v is not None and self.kind == "ratio":
            ratio = f"{v:.2f}x"
        elif v is not None and self.kind == "overhead":
            ratio = f"{v:+.3f} s"
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]
        return [self.metric, s(self.devup), s(self.raw), ratio, self.target(), verdict]


def median(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def build_rows(samples: Samples) -> list[Row]:
    d = samples.data
    m = {k: median(v) for k, v in d.items()}
    return [
        Row("up (2 groups + 2 services)", m.get("devup_up"), m.get("raw_up"), "ratio", 1.10),
        Row("down", m.get("devup_down"), m.get("raw_down"), "ratio", 1.10),
        Row("rollback (fault before post_up)", m.get("devup_rollback"), m.get("raw_down"), "ratio", 1.10),
        Row("up of a session already up", m.get("devup_up_noop"), None, "abs", 0.25),
        Row(f"ls with {LS_SESSIONS} sessions", m.get("devup_ls_20"), None, "abs", 0.3),
        Row(
            f"startup: devup ls ({LS_SESSIONS - 1} sessions)",
            m.get("devup_ls_n"),
            m.get("python_pass_s"),
            "overhead",
            0.15,
        ),
        Row("startup: devup env NAME", m.get("devup_env"), m.get("python_pass_s"), "overhead", 0.15),
        Row("startup: devup status NAME", m.get("devup_status"), m.get("python_pass_s"), "overhead", 0.15),
        Row("startup: devup path NAME", m.get("devup_path"), m.get("python_pass_s"), "overhead", 0.15),
        Row("startup: devup --help", m.get("devup_help"), m.get("python_pass"), "overhead", 0.15),
        Row(
            "startup: devup ls (no sessions)", m.get("devup_ls_empty"), m.get("python_pass"), "overhead", 0.15
        ),
    ]


def print_table(rows: list[Row]) -> None:
    head = ["metric", "devup", "raw", "ratio", "target", "result"]
    table = [head, *[r.cells() for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for i, r in enumerate(table):
        print(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))


def step_lines(ran: Ran) -> str:
    """devup's progress lines, each with the moment it reached the bench (seconds since the fork)."""
    keep = [
        (t, line.strip())
        for t, line in ran.err_lines
        if re.match(r"\s*(✓|✗|↶|could not|rolling back|warning|session)", line)
    ]
    out = [f"    at {t:6.2f}s  {line}" for t, line in keep] or ["    (no step lines)"]
    out.append(f"    at {ran.seconds:6.2f}s  (exit {ran.code})")
    return "\n".join(out)


def print_report(
    opts: argparse.Namespace,
    samples: Samples,
    ctx: Ctx | None,
    extra: dict[str, object],
    version: str,
    code: int,
) -> int:
    """Print the table and everything behind it; write --json. Returns the exit code (a broken
    round makes it 1)."""
    rows = build_rows(samples)
    print()
    print(
        f"devup bench on {getattr(opts, 'engine', 'docker')}: {opts.rounds} round(s), medians; "
        f"startup: {opts.startup_runs} runs each; "
        f"Python {platform.python_version()}; devup at {version}; load average at the end "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs"
    )
    print_table(rows)
    d = samples.data
    print()
    if d.get("devup_failed_up_total") and d.get("raw_up") and d.get("raw_down"):
        total = median(d["devup_failed_up_total"]) or 0
        raw_total = (median(d["raw_up"]) or 0) + (median(d["raw_down"]) or 0)
        print(
            f"info: failed `up` end to end {total:.3f} s vs raw up + teardown {raw_total:.3f} s "
            f"({total / raw_total:.2f}x)"
        )
    if "ls_sessions_create_s" in extra:
        print(
            f"info: `ls` sessions: {LS_SESSIONS - 1} host-mode (one `sleep` service each) + the round's hybrid "
            f"session; created in {extra['ls_sessions_create_s']:.1f} s, 4 at a time"
        )
    for key in (
        "raw_up",
        "devup_up",
        "raw_down",
        "devup_down",
        "devup_rollback",
        "devup_up_noop",
        "devup_ls_20",
        "python_pass",
        "devup_help",
        "devup_ls_empty",
    ):
        if d.get(key):
            print(f"samples {key:<15} " + " ".join(f"{v:.3f}" for v in d[key]))
    if d.get("noop_not_noop"):
        print(
            f"warning: {len(d['noop_not_noop'])} of {len(d.get('devup_up_noop', []))} `devup up` of an up "
            "session were NOT no-ops (devup found it unhealthy and resumed it); see its steps below"
        )
    if ctx is not None and ctx.failures:
        print("\nBROKEN ROUNDS (not in the medians):")
        for failure in ctx.failures:
            print(f"  - {tail(failure, 6)}")
        code = code or 1
    if ctx is not None and ctx.leaks:
        print("\nLEFT BEHIND by devup or the raw teardown (removed by the bench since):")
        for leak in ctx.leaks:
            print(f"  - {leak}")
    elif ctx is not None:
        print(
            "\nleak check: nothing labelled dev.devup.session/dev.devup.repo or left by the raw runs remains"
        )
    for title, key in (
        ("devup up", "up"),
        ("devup up (not a no-op!)", "up (again)"),
        ("devup down", "down"),
        ("devup up with DEVUP_FAULT=raise@before:post_up", "up with fault (rollback)"),
    ):
        if key in samples.steps:
            print(f"\n{title}, steps of the last round (stderr):")
            print(step_lines(samples.steps[key]))
    for key in [k for k in extra if k.startswith("importtime")]:
        print(f"\n{key} (python -X importtime -m devup; cumulative ms, >= 10 ms, two levels):")
        print(extra[key])
    if opts.json:
        doc = {
            "rounds": opts.rounds,
            "python": platform.python_version(),
            "devup": version,
            "samples": d,
            "results": [
                {
                    "metric": r.metric,
                    "devup": r.devup,
                    "raw": r.raw,
                    "kind": r.kind,
                    "value": r.value,
                    "target": r.target(),
                    "pass": r.passed,
                }
                for r in rows
            ],
            "leaks": ctx.leaks if ctx else [],
            "broken_rounds": ctx.failures if ctx else [],
            "extra": {k: v for k, v in extra.items() if isinstance(v, int | float)},
            "exit_code": code,
        }
        Path(opts.json).write_text(json.dumps(doc, indent=2) + "\n")
    return code
