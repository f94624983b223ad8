"""`integrate claude-code` on malformed, linked and non-finite settings files, and the hook's
DEVUP_HOOK_TIMEOUT: clear exit-2 errors with nothing changed, never a crash. No engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from devup import claude_code
from devup.errors import UsageError
from devup.report import NullReporter

OURS = {"hooks": [{"type": "command", "command": claude_code.CREATE_COMMAND}]}


def _settings(root: Path, text: str) -> Path:
    path = root / ".claude" / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _integrate(root: Path, *, remove: bool = False) -> str:
    return claude_code.integrate(root, NullReporter(), remove=remove)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('{"hooks": {"WorktreeCreate": [{"hooks": null}]}}', "hooks.WorktreeCreate[0].hooks"),
        ('{"hooks": {"WorktreeRemove": [{"matcher": "", "hooks": 5}]}}', "hooks.WorktreeRemove[0].hooks"),
        ('{"hooks": {"WorktreeCreate": [{"hooks": []}, {"hooks": "x"}]}}', "hooks.WorktreeCreate[1].hooks"),
        ('{"hooks": {"WorktreeCreate": null}}', "hooks.WorktreeCreate"),
        ('{"hooks": null}', "hooks"),
        ("[1, 2]", "JSON object"),
        ('{"n": 1e400}', "1e400"),
        ('{"n": Infinity}', "Infinity"),
        ('{"n": [-Infinity]}', "-Infinity"),
        ('{"n": NaN}', "NaN"),
        ('{"a": 1, "a": 2}', "'a'"),
    ],
)
def test_a_malformed_settings_file_is_a_usage_error_naming_file_and_key(
    tmp_path: Path, text: str, named: str
) -> None:
    path = _settings(tmp_path, text)
    for remove in (False, True):
        with pytest.raises(UsageError) as caught:
            _integrate(tmp_path, remove=remove)
        assert str(path) in caught.value.message and named in caught.value.message
        assert caught.value.exit_code == 2
        assert path.read_text() == text  # nothing was changed


def test_a_settings_file_that_is_no_utf8_text_or_a_folder_is_a_usage_error(tmp_path: Path) -> None:
    path = _settings(tmp_path, "")
    path.write_bytes(b'{"model": "\xff"}')
    with pytest.raises(UsageError, match=r"settings\.json"):
        _integrate(tmp_path)
    path.unlink()
    path.mkdir()
    with pytest.raises(UsageError, match=r"settings\.json"):
        _integrate(tmp_path)


def test_integrate_never_writes_a_non_finite_number(tmp_path: Path) -> None:
    path = _settings(tmp_path, '{"n": 1e308, "hooks": {"WorktreeCreate": [' + json.dumps(OURS) + "]}}")
    _integrate(tmp_path)
    text = path.read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text)["n"] == 1e308


def test_integrate_writes_through_a_symlink_inside_the_repository(tmp_path: Path) -> None:
    shared = tmp_path / "config" / "claude.json"
    shared.parent.mkdir()
    shared.write_text('{"model": "opus"}')
    link = tmp_path / ".claude" / "settings.json"
    link.parent.mkdir()
    link.symlink_to(Path("..") / "config" / "claude.json")

    _integrate(tmp_path)
    assert link.is_symlink() and os.readlink(link) == os.path.join("..", "config", "claude.json")
    data = json.loads(shared.read_text())
    assert data["model"] == "opus" and set(data["hooks"]) == {"WorktreeCreate", "WorktreeRemove"}

    _integrate(tmp_path, remove=True)
    assert link.is_symlink() and json.loads(shared.read_text()) == {"model": "opus"}

    # Only devup's hooks in it: --remove empties the file the link leads to, keeping both.
    shared.write_text("{}")
    _integrate(tmp_path)
    _integrate(tmp_path, remove=True)
    assert link.is_symlink() and json.loads(shared.read_text()) == {}


def test_integrate_refuses_a_symlink_that_leads_outside_the_repository(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shared = tmp_path / "dotfiles" / "claude-settings.json"
    shared.parent.mkdir()
    shared.write_text('{"model": "opus"}')
    link = root / ".claude" / "settings.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(shared)
    with pytest.raises(UsageError) as caught:
        _integrate(root)
    assert str(shared) in caught.value.message and caught.value.exit_code == 2
    assert link.is_symlink() and shared.read_text() == '{"model": "opus"}'

    # The same through a linked .claude folder.
    link.unlink()
    link.parent.rmdir()
    (root / ".claude").symlink_to(shared.parent)
    with pytest.raises(UsageError):
        _integrate(root)
    assert sorted(p.name for p in shared.parent.iterdir()) == ["claude-settings.json"]

    # Nor into git's own folder (a committed link to .git/hooks/post-checkout).
    (root / ".claude").unlink()
    (root / ".git" / "hooks").mkdir(parents=True)
    (root / ".claude").mkdir()
    link.symlink_to(Path("..") / ".git" / "hooks" / "post-checkout")
    with pytest.raises(UsageError):
        _integrate(root)
    assert list((root / ".git" / "hooks").iterdir()) == []


@pytest.mark.parametrize("value", ["soon", "nan", "inf", "-5", "0"])
def test_a_bad_hook_timeout_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DEVUP_HOOK_TIMEOUT", value)
    read, write = os.pipe()
    try:
        with pytest.raises(UsageError, match="DEVUP_HOOK_TIMEOUT"):
            claude_code.read_payload(read)
    finally:
        os.close(read)
        os.close(write)


def test_a_good_hook_timeout_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVUP_HOOK_TIMEOUT", "0.2")
    read, write = os.pipe()
    try:
        with pytest.raises(UsageError, match=r"after 0\.2 s"):
            claude_code.read_payload(read)
    finally:
        os.close(read)
        os.close(write)
