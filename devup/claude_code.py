"""Claude Code integration (SPEC §8): the WorktreeCreate/WorktreeRemove hook handlers and
`devup integrate claude-code`, which registers them in the repository's .claude/settings.json.

Claude Code runs a WorktreeCreate command hook with a JSON object on stdin and takes the
worktree's absolute path from its stdout; any non-zero exit aborts the worktree. The payload
has changed between versions (`name` in 2.1.x builds, `worktree_name` in the documented schema;
`base_commit` or `base_ref` when present), so every spelling is read and unknown fields ignored.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import select
import time
from pathlib import Path
from typing import Any

from devup import attach
from devup.errors import DevupError, PayloadError, UsageError
from devup.locks import write_atomic
from devup.report import Reporter
from devup.workspace import Workspace, open_workspace

CREATE_COMMAND = "devup hook claude-code worktree-create"
REMOVE_COMMAND = "devup hook claude-code worktree-remove"
EVENTS = {"WorktreeCreate": CREATE_COMMAND, "WorktreeRemove": REMOVE_COMMAND}
SETTINGS = Path(".claude") / "settings.json"
PAYLOAD_TIMEOUT = 30.0  # seconds; Claude Code writes the payload at once


def read_payload(fd: int = 0, *, timeout: float | None = None) -> dict[str, Any]:
    """Read exactly one JSON object from `fd`, returning as soon as it is complete.

    Never waits for end of input: a caller that keeps its end of the pipe open (as a hook
    runner may) must not hang us. Chunks are read with os.read as they arrive and parsed with
    raw_decode, which tells a complete object from a prefix of one.
    """
    limit = timeout if timeout is not None else _hook_timeout()
    deadline = time.monotonic() + limit
    decoder, text = codecs.getincrementaldecoder("utf-8")(errors="replace"), ""
    parser = json.JSONDecoder()
    while True:
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(remaining, 0))
        if not ready:
            raise PayloadError(
                f"no complete JSON object on standard input after {limit:g} s",
                hint="the hook expects Claude Code's payload, e.g. "
                '`echo \'{"name": "agent-1", "cwd": "."}\' | devup hook claude-code worktree-create`',
            )
        chunk = os.read(fd, 65536)
        text += decoder.decode(chunk, final=not chunk)
        body = text.lstrip()
        if body and not body.startswith("{"):
            raise PayloadError(f"standard input is not a JSON object: {body[:60]!r}")
        if body:
            try:
                found, _ = parser.raw_decode(body)
            except json.JSONDecodeError as exc:
                if not chunk:
                    raise PayloadError(f"standard input ended inside the JSON object: {exc.msg}") from None
            else:
                assert isinstance(found, dict)
                return found
        if not chunk:
            raise PayloadError("standard input ended before a JSON object came")


def _hook_timeout() -> float:
    """DEVUP_HOOK_TIMEOUT, seconds > 0 (unset or empty: PAYLOAD_TIMEOUT); else a usage error."""
    import math

    raw = os.environ.get("DEVUP_HOOK_TIMEOUT", "").strip()
    if not raw:
        return PAYLOAD_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UsageError(
            f"DEVUP_HOOK_TIMEOUT={raw!r} is not a number of seconds above 0",
            hint=f"unset it (the default is {PAYLOAD_TIMEOUT:g} s) or set it to e.g. 60",
        )
    return value


def _text(payload: dict[str, Any], *keys: str, exact: bool = False) -> str | None:
    """The first of `keys` that holds some text, trimmed; with `exact` as given (a name: `" a"`
    is another name than `a`, and SPEC §8 never lets two names share a session)."""
    for key in keys:
        value = payload.get(key)
        if isinstance(value, str) and value.strip():
            return value if exact else value.strip()
    return None


def worktree_create(payload: dict[str, Any], reporter: Reporter) -> Path:
    """Bring up the session the payload names, in devup's own worktree; return its path."""
    from devup import session  # the whole `up` machinery: only this handler needs it

    raw = _text(payload, "name", "worktree_name", exact=True)
    if raw is None:
        raise PayloadError(
            "the payload names no worktree (neither `name` nor `worktree_name`)",
            hint='run it as Claude Code\'s WorktreeCreate hook, or pass {"name": ...}',
        )
    name = attach.agent_session_name(raw)
    ws = open_workspace(Path(_text(payload, "cwd") or os.getcwd()))
    base = _text(payload, "base_commit", "base_ref")
    if name != raw:
        reporter.note(f"session name {name} (from Claude Code's worktree name {raw!r})")
    result = session.up(ws, session.UpRequest(name=name, base=base), reporter)
    return Path(result.worktree).resolve()


def worktree_remove(payload: dict[str, Any], reporter: Reporter) -> str:
    """Bring down the session whose worktree the payload names; a dirty worktree is refused
    (as `down` refuses it). A path no session uses is nothing to do."""
    from devup import teardown

    raw = _text(payload, "worktree_path", "path")
    if raw is None:
        raise PayloadError("the payload has no `worktree_path`")
    path = Path(raw)
    ws = _workspace_of(path, _text(payload, "cwd"))
    record = attach.session_at(ws, path)
    if record is None:
        return f"no devup session uses {path}: nothing to do"
    try:
        return teardown.down(ws, record.session, reporter).message
    except DevupError as exc:
        # Claude Code keeps a WorktreeRemove hook's stderr for its debug log and shows nothing,
        # then exits as if the worktree were gone (claude-code-cli.md F4): say it on the
        # user's terminal too, or the refusal (and the session still running) goes unseen.
        _tell_terminal(
            f"devup: worktree {path} was NOT removed; session {record.session} is still running.\n"
            f"devup: {exc.message}\n" + (f"devup: hint: {exc.hint}\n" if exc.hint else "")
        )
        raise


def _tell_terminal(text: str) -> None:
    """Write `text` to the controlling terminal, when there is one that stderr is not already."""
    try:
        if os.isatty(2):
            return  # run by hand: the error on stderr is on the screen already
        with open("/dev/tty", "w", encoding="utf-8", errors="replace") as tty:
            tty.write(text.replace("\n", "\r\n"))  # a raw-mode terminal (a TUI) needs the \r
    except OSError:
        pass  # no terminal (`claude -p` in CI): stderr and the exit code are all there is


def _workspace_of(path: Path, cwd: str | None) -> Workspace:
    if path.is_dir():
        try:
            return open_workspace(path)
        except DevupError:
            pass  # a folder that is no longer a worktree: fall back to the repository in cwd
    return open_workspace(Path(cwd or os.getcwd()))


# --- integrate ----------------------------------------------------------------------------


def _is_ours(hook: Any, command: str) -> bool:
    return isinstance(hook, dict) and hook.get("type") == "command" and hook.get("command") == command


class _Refused(ValueError):
    """A settings file json reads but devup must not rewrite (the reason is the message)."""


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Refused(f"the number {text} is out of range (written back, it would be Infinity: no JSON)")
    return value


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is no JSON value")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _Refused(f"the key {key!r} appears twice in one object (devup would keep only the last)")
        data[key] = value
    return data


def _load(path: Path) -> dict[str, Any] | None:
    """The settings, checked as far as devup reads and rewrites them: a file devup could not
    write back as it was (a non-finite number, a duplicate key) or could not merge into (a hook
    list that is no list) is a usage error naming the file and key, and nothing is changed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text; nothing was changed") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}; nothing was changed") from None
    try:
        data = json.loads(
            text, parse_float=_finite, parse_constant=_constant, object_pairs_hook=_no_duplicates
        )
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); nothing was changed",
            hint="fix the file, then run `devup integrate claude-code` again",
        ) from None
    except ValueError as exc:  # _Refused, or an integer too long for Python to read
        raise UsageError(
            f"{path}: {exc}; nothing was changed",
            hint="fix the file, then run `devup integrate claude-code` again",
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("hooks", {}), dict):
        raise UsageError(f"{path}: expected a JSON object with an object `hooks`; nothing was changed")
    for event in EVENTS:
        groups = data.get("hooks", {}).get(event, [])
        if not isinstance(groups, list):
            raise UsageError(f"{path}: hooks.{event} is not a list; nothing was changed")
        for index, group in enumerate(groups):
            if isinstance(group, dict) and not isinstance(group.get("hooks", []), list):
                found = json.dumps(group["hooks"])[:40]
                raise UsageError(
                    f"{path}: hooks.{event}[{index}].hooks is not a list (it is {found}); nothing was changed"
                )
    return data


def _target(root: Path) -> Path:
    """The settings file to write: `root`/.claude/settings.json, or the file a symlink on the
    way leads to, which must stay in the repository. Writing the link's own path would replace
    the link with a regular file and leave the file it shares unchanged."""
    path, top = root / SETTINGS, root.resolve()
    real = path.resolve()
    if not real.is_relative_to(top) or real.is_relative_to(top / ".git"):
        raise UsageError(
            f"{path} leads (through a symlink) to {real}, outside the repository's files: devup "
            "changes no file there; nothing was changed",
            hint=f"add devup's hooks to {real} by hand, or replace the link with a file of this repository",
        )
    return real


def _add(data: dict[str, Any], reporter: Reporter) -> None:
    hooks = data.setdefault("hooks", {})
    for event, command in EVENTS.items():
        groups = hooks.setdefault(event, [])
        if any(_is_ours(h, command) for g in groups if isinstance(g, dict) for h in g.get("hooks", [])):
            continue
        if event == "WorktreeCreate" and groups:
            reporter.warn(
                "another WorktreeCreate hook is configured too; Claude Code takes the worktree path "
                "from a WorktreeCreate hook's output, so keep only one of them"
            )
        groups.append({"hooks": [{"type": "command", "command": command}]})


def _remove(data: dict[str, Any]) -> None:
    hooks = data.get("hooks")
    if not isinstance(hooks, dict):
        return
    for event, command in EVENTS.items():
        groups = hooks.get(event)
        if not isinstance(groups, list):
            continue
        kept = []
        for group in groups:
            if isinstance(group, dict) and isinstance(group.get("hooks"), list):
                rest = [h for h in group["hooks"] if not _is_ours(h, command)]
                if not rest and group["hooks"]:
                    continue  # a group that held only devup's hook: devup added it
                group = {**group, "hooks": rest}
            kept.append(group)
        if kept:
            hooks[event] = kept
        else:
            del hooks[event]
    if not hooks:
        del data["hooks"]


def integrate(root: Path, reporter: Reporter, *, remove: bool = False) -> str:
    """Merge devup's hooks into (or take them out of) `root`/.claude/settings.json, keeping
    every other key and hook; changes nothing when there is nothing to change."""
    path = root / SETTINGS
    original = _load(path)
    data = json.loads(json.dumps(original)) if original is not None else {}
    _remove(data) if remove else _add(data, reporter)
    if data == (original if original is not None else {}) and (original is not None or remove):
        return f"{path}: devup's hooks are {'not there' if remove else 'already there'}; nothing changed"
    target = _target(root)
    linked = target != root.resolve() / SETTINGS
    if remove and not data and not linked:
        path.unlink()  # devup's hooks were all it held: as if integrate had never run
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when empty: .claude may hold other things
        return f"removed devup's hooks from {path} (nothing else was in it: file removed)"
    # Through a symlink the file stays, even emptied: the link and its target are the user's.
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    write_atomic(target, text, mode=mode)
    verb = "removed devup's hooks from" if remove else "added devup's WorktreeCreate/WorktreeRemove hooks to"
    return f"{verb} {path}" + (f" (a link to {target})" if linked else "")
