"""`devup init`: a starter devup.toml, plus compose groups copied from compose-templates/."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from devup.errors import UsageError
from devup.paths import CONFIG_NAME

_ENV_HINTS = {
    "postgres": 'DATABASE_URL = "postgresql://postgres@127.0.0.1:${DEVUP_PORT_POSTGRES}/app"',
    "redis": 'REDIS_URL = "redis://127.0.0.1:${DEVUP_PORT_REDIS}/0"',
    "mysql": 'MYSQL_URL = "mysql://root@127.0.0.1:${DEVUP_PORT_MYSQL}/app"',
    "mailpit": 'SMTP_URL = "smtp://127.0.0.1:${DEVUP_PORT_MAILPIT}"',
    "minio": 'S3_ENDPOINT = "http://127.0.0.1:${DEVUP_PORT_MINIO}"',
}


def templates_dir() -> Path:
    """`$DEVUP_TEMPLATES`; else compose-templates/ beside the package (a source checkout or an
    editable install); else where a wheel put them: share/devup/compose-templates under the
    environment's prefix, the scheme's data path (Debian: /usr/local) or the user base."""
    if env := os.environ.get("DEVUP_TEMPLATES"):
        return Path(env)
    beside = Path(__file__).resolve().parent.parent / "compose-templates"
    if beside.is_dir():
        return beside
    import site
    import sysconfig

    for base in (sys.prefix, sysconfig.get_path("data"), site.getuserbase()):
        installed = Path(base) / "share" / "devup" / "compose-templates"
        if installed.is_dir():
            return installed
    return beside


def available() -> list[str]:
    folder = templates_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def init(root: Path, templates: list[str]) -> list[Path]:
    """Write devup.toml and compose/<template>.yaml; refuses to overwrite anything."""
    unknown = [t for t in templates if t not in available()]
    if unknown:
        raise UsageError(
            f"unknown template {unknown[0]!r}", hint=f"available: {', '.join(available()) or 'none found'}"
        )
    targets = [root / CONFIG_NAME] + [root / "compose" / f"{t}.yaml" for t in templates]
    existing = [t for t in targets if t.exists()]
    if existing:
        raise UsageError(
            f"{existing[0]} already exists; nothing was written",
            hint="move it away first, or edit it by hand",
        )
    (root / "compose").mkdir(exist_ok=True) if templates else None
    for t in templates:
        shutil.copyfile(templates_dir() / f"{t}.yaml", root / "compose" / f"{t}.yaml")
    targets[0].write_text(_starter(root.name, templates), encoding="utf-8")
    return targets


def _starter(name: str, templates: list[str]) -> str:
    lines = [
        "# devup.toml: one isolated, running environment per branch (`devup up NAME`).",
        "# Reference: docs/config.md",
        "",
        "[project]",
        f'name = "{name}"',
        f'worktrees = "../{name}-worktrees"',
        'mode = "hybrid"  # container | hybrid | host',
        "",
        "[ports]",
        "range = [20000, 39999]",
        "",
        "[worktree]",
        'copy = []  # untracked files to copy into a new worktree, e.g. [".env"]',
        "",
        "[env]",
        *[_ENV_HINTS[t] for t in templates if t in _ENV_HINTS],
        "",
    ]
    for t in templates:
        lines += [f"[groups.{t}]", f'files = ["compose/{t}.yaml"]', "wait_timeout = 120", ""]
    lines += [
        "# [services.web]",
        '# run = "python -m http.server $PORT"',
        "# port = true",
        f"# depends_on = {[*templates]!r}".replace("'", '"'),
        '# ready = { http = "/" }',
        "",
        "# [hooks]",
        '# pre_spawn = "make migrate"',
        '# post_up = { run = "make seed", undo = "make unseed", timeout = 300 }',
        "",
    ]
    return "\n".join(lines)
