"""Rendering: progress lines, tables and error panels (rich lives here and in the cli package only)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from devup.records import SessionRecord

_consoles: dict[str, Console] = {}


def _console(name: str) -> Console:
    """rich is loaded on first use: `--json` output and `--help` never pay for it."""
    if name not in _consoles:
        from rich.console import Console

        _consoles[name] = Console(stderr=name == "err", highlight=False)
    return _consoles[name]


def __getattr__(name: str) -> Any:
    if name in ("err", "out"):
        return _console(name)
    raise AttributeError(name)


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


Part = str | tuple[str, str]  # plain text, or (text, rich style)


class ConsoleReporter:
    """One line per step with its duration; on a terminal, a spinner line for running steps.

    Off a terminal (CI, scripts, agents) the lines are written as plain text without loading
    rich, which costs ~30 ms of every command's start.
    """

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self._lock = threading.Lock()
        self._running: dict[str, None] = {}
        self._status: Any = None
        self._terminal = sys.stderr.isatty()

    def _refresh(self) -> None:
        if not self._terminal or self.quiet:
            return
        if self._status is None:
            self._status = _console("err").status(
                ""
            )  # on the first step: a reporter never used costs nothing
        if self._running:
            self._status.update(" · ".join(self._running))
            self._status.start()
        else:
            self._status.stop()

    def step_started(self, step: str) -> None:
        with self._lock:
            self._running[step] = None
            self._refresh()

    def step_done(self, step: str, seconds: float, detail: str = "") -> None:
        with self._lock:
            self._running.pop(step, None)
            self._print(("✓", "green"), f" {step:<24} {seconds:6.2f}s {detail}".rstrip())
            self._refresh()

    def step_failed(self, step: str, seconds: float, error: str) -> None:
        with self._lock:
            self._running.pop(step, None)
            first = error.splitlines()[0] if error else ""
            self._print(("✗", "red"), f" {step:<24} {seconds:6.2f}s {first}")
            self._refresh()

    def undone(self, label: str, error: str | None) -> None:
        with self._lock:
            if error:
                self._print("  ", ("could not undo", "red"), f" {label}: {error}")
            else:
                self._print("  ", ("↶", "yellow"), f" undone: {label}")

    def note(self, message: str) -> None:
        with self._lock:
            self._print(message)

    def warn(self, message: str) -> None:
        with self._lock:
            self._print(("warning:", "yellow"), f" {message}")

    def _print(self, *parts: Part) -> None:
        if self.quiet:
            return
        if self._terminal:
            from rich.text import Text

            _console("err").print(Text.assemble(*parts))
        else:
            sys.stderr.write("".join(p if isinstance(p, str) else p[0] for p in parts) + "\n")
            sys.stderr.flush()

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()


class TolerantStream:
    """stdout/stderr that never raise: a closed pipe (`devup up x | head -1`), a full disk or a
    vanished terminal must not stop a rollback halfway (SPEC §5.11). After the first failure the
    stream drops what it is given, and its descriptor is pointed at /dev/null so that the
    interpreter's own flush at exit cannot fail either."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return int(self._stream.write(text))
            except (OSError, ValueError):
                self._break()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._break()

    def _break(self) -> None:
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def reopen_closed_std_streams() -> None:
    """Point standard descriptors that were closed (`devup up x 2>&-`) at /dev/null, and give
    Python stream objects for them (new-L2).

    Python sets sys.stderr to None for a closed fd 2, and the first message devup wrote then
    crashed it before it did anything (exit 120, silently). Left closed, the descriptor would
    also go to the next file devup opens (a lock, a journal), which every child that inherits
    fd 2 would then write into."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            # Lives as long as the process, as the interpreter's own streams do.
            stream = open(fd, "r" if fd == 0 else "w", closefd=False, errors="backslashreplace")  # noqa: SIM115
            setattr(sys, name, stream)


def make_streams_tolerant() -> None:
    reopen_closed_std_streams()
    if not isinstance(sys.stdout, TolerantStream):
        sys.stdout = TolerantStream(sys.stdout)
    if not isinstance(sys.stderr, TolerantStream):
        sys.stderr = TolerantStream(sys.stderr)


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    sys.stdout.flush()


def error(message: str, hint: str | None) -> None:
    # Messages quote config keys like [ports].range: never read them as markup.
    _console("err").print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    if hint:
        _console("err").print(f"[cyan]hint:[/] {escape(hint)}", soft_wrap=True)


def up_summary(doc: dict[str, Any], record: SessionRecord, noop: bool) -> None:
    """The summary of a successful `up`: one row per unit with its port variables and URL."""
    from devup import remote

    units = _up_units(record)
    engine = remote.engine_of(record)
    verb = "already up (nothing to do)" if noop else ("resumed" if doc["resumed"] else "up")
    title = f"session {doc['session']}"
    if _colour_stdout():
        title = f"\033[1;32m{title}\033[0m"
    sys.stdout.write(
        f"{title} {verb} in {doc['duration_s']:.2f}s ({doc['mode']} mode, branch {doc['branch']})\n"
    )
    if units:
        _columns(("unit", "ports (DEVUP_PORT_…)", "url"), [list(u) for u in units])
    if engine is not None and engine.remote:
        sys.stdout.write(f"engine    {engine.label}   (ports answer at its host)\n")
    sys.stdout.write(
        f"worktree  {doc['worktree']}\n"
        f"env file  {doc['env_file']}   (`devup env {doc['session']} --format shell` for eval)\n"
    )
    sys.stdout.flush()


def _up_units(record: SessionRecord) -> list[tuple[str, str, str]]:
    """(unit, its DEVUP_PORT_ variables, its URL) for each compose service and native service."""
    from devup import inspect
    from devup.envvars import port_key

    units: list[tuple[str, str, str]] = []
    urls = inspect.urls(record)
    for g in record.groups:
        for svc in g.services:
            base = port_key(svc)
            keys = sorted(
                k
                for k in record.ports
                if k.startswith(f"{base}_") and k[len(base) + 1 :].replace("_", "").isdigit()
            )
            shown = ", ".join(f"{k}={record.ports[k]}" for k in keys) or "-"
            # The hostname URL where the unit has one (SPEC §9), else its published port's.
            units.append((f"{g.name}/{svc}", shown, record.urls.get(svc) or urls.get(f"{g.name}/{svc}", "")))
    for name in record.services:
        key = port_key(name)
        port = record.ports.get(key)
        units.append((name, f"{key}={port}" if port else "-", record.urls.get(name) or urls.get(name, "")))
    return units


_ANSI = {
    "up": "32",
    "degraded": "33",
    "stopped": "2",
    "failed": "31",
    "interrupted": "31",
    "yes": "32",
    "no": "31",
}


def _colour_stdout() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def _columns(header: tuple[str, ...], rows: list[list[str]], *, coloured: int | None = None) -> None:
    """Aligned columns, written directly: rich's table costs ~0.1 s to import and render, a third
    of what `ls` may take. On a terminal the header is bold and column `coloured` is coloured."""
    lines = [list(header), *rows]
    widths = [max(len(line[c]) for line in lines) for c in range(len(header))]
    tty = _colour_stdout()
    for n, line in enumerate(lines):
        cells = [cell.ljust(w) for cell, w in zip(line, widths, strict=True)]
        if tty and n == 0:
            cells = [f"\033[1m{c}\033[0m" for c in cells]
        elif tty and coloured is not None and line[coloured] in _ANSI:
            cells[coloured] = f"\033[{_ANSI[line[coloured]]}m{cells[coloured]}\033[0m"
        sys.stdout.write("  ".join(cells).rstrip() + "\n")
    sys.stdout.flush()


def sessions_table(rows: list[dict[str, Any]]) -> None:
    """`ls`: one line per session, the status coloured on a terminal."""
    if not rows:
        sys.stdout.write("no sessions\n")
        return
    # The `from` column only when a session was cloned (`up --from`): the table is unchanged
    # for everyone who never clones, and scripts reading its last column keep working.
    cloned = any(r.get("source") for r in rows)
    header = ("session", "status", "mode", "branch", "worktree", "ports", "used", "expires", "engine")
    _columns(
        (*header, "from") if cloned else header,
        [
            [
                r["session"],
                r["status"],
                r["mode"],
                r["branch"],
                r["worktree"],
                " ".join(
                    f"{k}={v}" for k, v in r["ports"].items() if "_" not in k or k.rsplit("_", 1)[1].isalpha()
                ),
                _ago(r.get("last_used")),
                _until(r.get("expires")),
                engine_label(r.get("engine")),
                *([source_label(r.get("source"))] if cloned else []),
            ]
            for r in rows
        ],
        coloured=1,
    )
    changed = [r["session"] for r in rows if r.get("changed")]
    if changed:
        note(
            f"the config changed since {', '.join(changed)} came up (`ls --json`: changed); "
            f"`devup up {changed[0] if len(changed) == 1 else 'NAME'}` applies it"
        )


def _seconds(iso: str) -> float:
    import calendar
    import time

    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")) - time.time()


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{round(seconds / size)}{unit}"  # a 2h ttl just set is "in 2h", not "in 1h"
    return f"{int(seconds)}s"


def _ago(iso: str | None) -> str:
    return "-" if not iso else _span(max(-_seconds(iso), 0)) + " ago"


def _until(iso: str | None) -> str:
    if not iso:
        return "-"
    left = _seconds(iso)
    return "due" if left <= 0 else "in " + _span(left)


def source_label(source: Any) -> str:
    """Where a cloned session's data came from: `A` (a session) or `snapshot s1`; `-` if not cloned."""
    if not source:
        return "-"
    return source["name"] if source.get("kind") == "session" else f"snapshot {source['name']}"


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def snapshots_table(docs: list[dict[str, Any]]) -> None:
    """`snapshot ls`: one line per snapshot."""
    if not docs:
        sys.stdout.write("no snapshots\n")
        return
    _columns(
        ("snapshot", "source", "created", "size", "volumes"),
        [
            [
                d["snapshot"],
                d["source"],
                d["created_at"],
                size(d["size"]),
                " ".join(f"{v['group']}/{v['key']}" for v in d["volumes"]),
            ]
            for d in docs
        ],
    )


def status_table(
    name: str, status: str, units: list[dict[str, Any]], *, engine: Any = None, source: Any = None
) -> None:
    on = f" (engine {engine_label(engine)})" if engine and engine.get("remote") else ""
    cloned = f" (data from {source_label(source)})" if source else ""
    sys.stdout.write(f"session {name}: {status}{on}{cloned}\n")
    _columns(
        ("unit", "kind", "state", "healthy", "url"),
        [
            [u["name"], u["kind"], u["state"], "yes" if u["healthy"] else "no", u.get("url", "")]
            for u in units
        ],
        coloured=3,
    )


def engine_label(engine: Any) -> str:
    """A recorded engine as `ls` and `status` show it: local, or the context and endpoint."""
    from devup import remote

    found = remote.Engine.from_json(engine)
    return "-" if found is None else found.label


def plain(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def changes_table(doc: dict[str, Any]) -> None:
    """`up --dry-run`: what would be done, one line per unit (keeps last)."""
    rows = sorted(doc["changes"], key=lambda c: c["action"] == "keep")
    plain(
        f"session {doc['session']} ({'new' if doc['new'] else 'exists'}): "
        + ("nothing to change" if all(c["action"] == "keep" for c in rows) else "would")
    )
    _columns(("kind", "name", "action"), [[c["kind"], c["name"], c["action"]] for c in rows], coloured=None)


def note(text: str) -> None:
    """A remark for the person, on stderr (stdout may be a JSON document)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # stderr closed: nothing to say it on
        sys.stderr.write(f"note: {text}\n")
        sys.stderr.flush()


_PALETTE = ("cyan", "magenta", "green", "yellow", "blue", "bright_cyan", "bright_magenta", "bright_green")
_colours: dict[str, str] = {}
_log_lock = threading.Lock()


def log_line(source: str, line: str) -> None:
    """One log line, prefixed by its source; coloured on a terminal, plain otherwise."""
    with _log_lock:
        if _console("out").is_terminal:
            colour = _colours.setdefault(source, _PALETTE[len(_colours) % len(_PALETTE)])
            _console("out").print(f"[{colour}]{source} |[/] ", end="")
            _console("out").print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            sys.stdout.write(f"{source} | {line}\n")
            sys.stdout.flush()


def orphans(found: list[Any], *, dry_run: bool) -> None:
    if not found:
        _console("out").print("nothing to collect")
        return
    for o in found:
        if dry_run:
            state = "would remove"
        elif o.removed:
            state = "[green]removed[/]"
        else:
            state = f"[red]not removed[/] ({o.error})"
        owner = "" if o.kind == "router" else f" (session {o.session})"  # shared by every session
        _console("out").print(f"{state} {o.kind} {o.name}{owner}")


def contexts_table(contexts: list[dict[str, Any]]) -> None:
    """`doctor`: each docker context's engine, local or remote, and whether it answers."""
    sys.stdout.write("docker contexts:\n")
    _columns(
        ("  context", "engine", "where", "answers"),
        [
            [
                f"{'*' if c['current'] else ' '} {c['name']}",
                c["host"],
                f"remote ({c['address']})" if c["remote"] else "local",
                f"yes (engine {c['version']})" if c["answers"] else f"no: {c['error'].splitlines()[0]}",
            ]
            for c in contexts
        ],
    )
