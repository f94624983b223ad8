"""Fixtures: real git repositories in temp dirs, the real CLI, a real engine; a leak check at the end."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import world

BUSYBOX = os.environ.get("DEVUP_TEST_BUSYBOX", "devup-local/busybox:latest")
SKIP_DOCKER = os.environ.get("DEVUP_SKIP_DOCKER_TESTS") == "1"
# Where no network namespace (or sshd in it) can be made, the remote-engine tests fail, unless
# this says to skip them (tests/test_remote.py).
SKIP_REMOTE = os.environ.get("DEVUP_SKIP_REMOTE_TESTS") == "1"
# The engine the end-to-end tests run on (SPEC §6): docker (the default) or podman. scripts/test
# runs the suite once per engine (`both`); one pytest process tests one engine. The test process
# points DOCKER_HOST at it, so devup, the docker CLI and the docker SDK of the tests all talk to it.
PODMAN_SOCKET = os.environ.get("DEVUP_TEST_PODMAN_SOCKET", "unix:///run/podman/podman.sock")
TEST_ENGINE = os.environ.get("DEVUP_TEST_ENGINE", "docker")
if TEST_ENGINE not in ("docker", "podman"):
    raise pytest.UsageError(
        f"DEVUP_TEST_ENGINE={TEST_ENGINE!r}: one pytest run tests docker or podman "
        "(scripts/test runs both, one after the other)"
    )
if TEST_ENGINE == "podman":
    os.environ["DOCKER_HOST"] = PODMAN_SOCKET
    os.environ.pop("DOCKER_CONTEXT", None)
_LEAKS: list[str] = []
_REAL_HOME = Path.home()


def pytest_configure(config: pytest.Config) -> None:
    if SKIP_DOCKER:
        banner = "\n".join(
            [
                "",
                "!" * 78,
                "!!  DEVUP_SKIP_DOCKER_TESTS=1: the Docker end-to-end tests will NOT run.",
                "!!  The guarantees of SPEC §5 are NOT checked by this run.",
                "!" * 78,
                "",
            ]
        )
        print(banner, file=sys.stderr)
    if SKIP_REMOTE:
        banner = "\n".join(
            [
                "",
                "!" * 78,
                "!!  DEVUP_SKIP_REMOTE_TESTS=1: where no network namespace or sshd can be made,",
                "!!  the remote-engine tests are skipped: SPEC §6 is then NOT checked by this run.",
                "!" * 78,
                "",
            ]
        )
        print(banner, file=sys.stderr)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SKIP_DOCKER:
        skip = pytest.mark.skip(reason="DEVUP_SKIP_DOCKER_TESTS=1: docker tests NOT run")
        for item in items:
            if "docker" in item.keywords:
                item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _LEAKS:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = ["", "LEAK CHECK FAILED: tests left things behind (cleaned up since):", *_LEAKS]
        if reporter:
            reporter.write_line("\n".join(lines), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test touches the real home: devup's state lives in the test's temp dir."""
    home = tmp_path / "home"
    home.mkdir()
    if "DOCKER_CONFIG" not in os.environ and (_REAL_HOME / ".docker").is_dir():
        monkeypatch.setenv("DOCKER_CONFIG", str(_REAL_HOME / ".docker"))  # keeps CLI plugins found
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DEVUP_HOME", str(tmp_path / "state"))
    # A test (or a child) that drops DEVUP_HOME must fail, not fall back to a real state folder:
    # XDG_STATE_HOME is a file, so devup cannot create its state under it (as pre-commit's
    # fixture makes the default store directory raise).
    trap = tmp_path / "not-a-state-home"
    trap.write_text("devup tests must set DEVUP_HOME\n")
    monkeypatch.setenv("XDG_STATE_HOME", str(trap))
    monkeypatch.delenv("DEVUP_FAULT", raising=False)
    monkeypatch.setenv("GIT_AUTHOR_NAME", "t")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "t@example.invalid")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "t")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "t@example.invalid")
    yield
    # Where caddy is installed, a session with a port gets hostnames, and the router of this
    # test's state folder keeps running after its sessions (`gc` stops it): it goes with the test.
    world.stop_router(tmp_path / "state")


@pytest.fixture(scope="session", autouse=True)
def _no_router_outlives_the_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Routers (caddy) of state folders the per-test stop cannot reach (a module-scoped
    fixture's, a test whose state folder was made read-only) are stopped when the run ends."""
    yield
    import psutil

    base = str(tmp_path_factory.getbasetemp())
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "caddy" and any(base + "/" in arg for arg in proc.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                proc.terminate()
                proc.wait(10)


@pytest.fixture(scope="session")
def engine() -> None:
    """The engine under test (DEVUP_TEST_ENGINE) and Compose v2 must answer; a missing engine
    fails, never skips; and Podman, when Podman is asked, not another engine on its socket."""
    try:
        names = world.docker("version", "--format", "{{range .Server.Components}}{{.Name}};{{end}}")
        world.docker("image", "inspect", BUSYBOX)
        subprocess.run(["docker", "compose", "version"], check=True, capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.fail(
            f"docker tests need an engine, Compose v2 and {BUSYBOX}: {exc}; run scripts/test "
            "(or set DEVUP_SKIP_DOCKER_TESTS=1 to skip them, loudly)"
        )
    if (TEST_ENGINE == "podman") != ("Podman Engine" in names):
        pytest.fail(f"DEVUP_TEST_ENGINE={TEST_ENGINE} but {os.environ.get('DOCKER_HOST')} serves {names!r}")


def project_name() -> str:
    """A project slug of its own: compose project names are global on the engine, and other
    test runs on this machine use the same session names."""
    return "t" + secrets.token_hex(3)


def port_range(width: int = 40) -> str:
    """A random port block: other test runs on this machine lease from their own state."""
    low = random.randrange(10000, 19000 - width)
    return f"[{low}, {low + width - 1}]"


def isolated(mode: str, *, project: str | None = None, ports: str | None = None, routes: bool = True) -> str:
    """The [project] and [ports] tables of a devup.toml with a compose project name and a port
    block of its own, so that test runs sharing an engine never meet; and [routes] ports of its
    own for the router of the hostnames (SPEC §9), used where another run's router (or the demo's)
    holds 80/443: each test's state folder has its router, and two must not want one port."""
    low = random.randrange(41000, 49000, 2)
    table = f"[routes]\nhttp_port = {low}\nhttps_port = {low + 1}\n" if routes else ""
    return (
        f'[project]\nname = "{project or project_name()}"\nmode = "{mode}"\n[ports]\nrange = {ports or port_range()}\n'
        + table
    )


@dataclass
class Repo:
    path: Path
    tmp: Path
    repo_id: str = ""
    runs: list[str] = field(default_factory=list)

    def devup(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "devup", *args],
            cwd=cwd or self.path,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=timeout,
        )

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "devup", *args],
            cwd=self.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )

    def up_json(self, *args: str, env: dict[str, str] | None = None) -> dict:
        result = self.devup("up", *args, "--json", env=env)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def worktree(self, name: str) -> Path:
        return self.path.parent / f"{self.path.name}-worktrees" / name

    def write(self, rel: str, text: str) -> None:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip())

    def commit(self, message: str = "change") -> None:
        world.git(self.path, "add", "-A")
        world.git(self.path, "commit", "-qm", message)


def make_repo(
    tmp_path: Path, toml: str, files: dict[str, str] | None = None, *, folder: str = "proj"
) -> Repo:
    path = tmp_path / folder
    path.mkdir()
    world.git(path, "init", "-q", "-b", "main")
    repo = Repo(path=path, tmp=tmp_path)
    repo.write("devup.toml", toml)
    for rel, text in (files or {}).items():
        repo.write(rel, text)
    repo.commit("init")
    repo.repo_id = hashlib.sha256(str((path / ".git").resolve()).encode()).hexdigest()[:16]
    return repo


@pytest.fixture
def make(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    """A factory of real repositories; afterwards anything they left is reported and removed."""
    made: list[Repo] = []

    def factory(toml: str, files: dict[str, str] | None = None, *, folder: str = "proj") -> Repo:
        repo = make_repo(tmp_path, toml, files, folder=folder)
        made.append(repo)
        return repo

    yield factory
    for repo in made:
        _sweep(repo, request.node.nodeid)


def _sweep(repo: Repo, test: str) -> None:
    leaks: list[str] = []
    for proc in world.tagged_processes(repo_id=repo.repo_id):
        leaks.append(f"process {proc.pid}")
        with contextlib.suppress(Exception):
            proc.kill()
    if not SKIP_DOCKER:
        for kind in ("container", "network", "volume"):
            for name in world.labelled(kind, repo_id=repo.repo_id):
                leaks.append(f"{kind} {name}")
                rm = {
                    "container": ["rm", "-f"],
                    "network": ["network", "rm"],
                    "volume": ["volume", "rm", "-f"],
                }[kind]
                subprocess.run(["docker", *rm, name], capture_output=True)
    if leaks:
        _LEAKS.append(f"  {test}: " + ", ".join(leaks))


HTTP_SERVICE = f"{sys.executable} -m http.server $PORT --bind 127.0.0.1"


def busybox_web(
    name: str = "web", *, port: int = 8080, volume: str | None = "data", health: bool = True
) -> str:
    """A compose file with one busybox httpd service answering on `port`."""
    lines = [
        "services:",
        f"  {name}:",
        f"    image: {BUSYBOX}",
        "    init: true",
        f'    command: ["sh", "-c", "mkdir -p /www && echo ${{DEVUP_SESSION}} > /www/index.html && exec httpd -f -p {port} -h /www"]',
        f'    ports: ["{port}:{port}"]',
    ]
    if health:
        lines += [
            f'    healthcheck: {{test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:{port}/"], '
            "interval: 1s, timeout: 2s, retries: 30}"
        ]
    if volume:
        lines += [f"    volumes: [{volume}:/data]", "volumes:", f"  {volume}: {{}}"]
    return "\n".join(lines) + "\n"
