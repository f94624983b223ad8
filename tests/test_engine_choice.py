"""Which engine a new session gets, and what is local (devup/remote.py), without an engine."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from devup import remote
from devup.errors import UsageError


@pytest.fixture
def contexts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DOCKER_CONFIG with contexts `big` (tcp) and `box` (ssh), the way the docker CLI stores them."""
    config = tmp_path / "docker-config"
    for n, (name, host) in enumerate({"big": "tcp://198.18.0.2:2375", "box": "ssh://me@box.example"}.items()):
        meta = config / "contexts" / "meta" / f"id{n}"
        meta.mkdir(parents=True)
        (meta / "meta.json").write_text(json.dumps({"Name": name, "Endpoints": {"docker": {"Host": host}}}))
    (config / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    for var in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY"):
        monkeypatch.delenv(var, raising=False)
    return config


@pytest.mark.parametrize(
    ("host", "local", "address"),
    [
        ("unix:///var/run/docker.sock", True, "127.0.0.1"),
        ("tcp://127.0.0.1:2375", True, "127.0.0.1"),
        ("tcp://127.8.9.10:2375", True, "127.0.0.1"),
        ("tcp://localhost:2375", True, "127.0.0.1"),
        ("tcp://[::1]:2375", True, "127.0.0.1"),
        ("npipe:////./pipe/docker_engine", True, "127.0.0.1"),
        ("tcp://198.18.0.2:2375", False, "198.18.0.2"),
        ("tcp://[fd00::7]:2376", False, "fd00::7"),
        ("tcp://big-box.example:2376", False, "big-box.example"),
    ],
)
def test_local_is_a_unix_socket_or_loopback_and_devup_host_follows(host, local, address):
    engine = remote.Engine(None, host)
    assert engine.remote is not local
    assert engine.address == address


def test_ipv6_addresses_are_bracketed_in_urls():
    assert remote.url_host("fd00::7") == "[fd00::7]" and remote.url_host("10.0.0.1") == "10.0.0.1"


def test_choice_order_option_then_config_then_docker_host_then_current_context(contexts, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://198.18.0.9:2375")
    monkeypatch.setenv("DOCKER_CONTEXT", "box")
    assert remote.choose(option="big", configured="box") == remote.Engine("big", "tcp://198.18.0.2:2375")
    assert remote.choose(option=None, configured="big").context == "big"
    assert remote.choose(option=None, configured=None) == remote.Engine(None, "tcp://198.18.0.9:2375")
    monkeypatch.delenv("DOCKER_HOST")
    assert remote.choose(option=None, configured=None) == remote.Engine("box", "ssh://me@box.example")
    monkeypatch.delenv("DOCKER_CONTEXT")
    (contexts / "config.json").write_text(json.dumps({"currentContext": "big"}))
    assert remote.choose(option=None, configured=None).context == "big"
    (contexts / "config.json").write_text("{}")
    assert remote.choose(option=None, configured=None) == remote.Engine("default", remote.DEFAULT_HOST)


def test_an_unknown_context_is_a_usage_error_listing_the_known_ones(contexts):
    with pytest.raises(UsageError) as caught:
        remote.choose(option="nope", configured=None)
    assert "nope" in caught.value.message and "big, box, default" in (caught.value.hint or "")


def test_an_engine_gives_children_its_host_and_leaves_this_process_alone(contexts, monkeypatch):
    monkeypatch.setenv("DOCKER_CONTEXT", "box")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", "/my/certs")
    before = dict(os.environ)
    child = remote.Engine("big", "tcp://198.18.0.2:2375").environ()
    assert child["DOCKER_HOST"] == "tcp://198.18.0.2:2375" and "DOCKER_CONTEXT" not in child
    # A context without TLS files: the shell's TLS settings are for another engine.
    assert "DOCKER_TLS_VERIFY" not in child and "DOCKER_CERT_PATH" not in child
    assert dict(os.environ) == before
    assert remote.current() == remote.Engine("box", "ssh://me@box.example")


def test_the_users_tls_settings_survive_any_number_of_other_engines(contexts, monkeypatch):
    """code-review §5 bug 5: binding a context without TLS used to drop the shell's TLS settings
    for the rest of the process, so gc and ls then spoke plain TCP to a TLS engine."""
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "tcp://198.18.0.7:2376")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", "/my/certs")
    mine = remote.current()
    for other in (remote.Engine("big", "tcp://198.18.0.2:2375"), mine, remote.Engine("box", "ssh://me@box")):
        other.environ()
    child = mine.environ()
    assert (child["DOCKER_HOST"], child["DOCKER_TLS_VERIFY"], child["DOCKER_CERT_PATH"]) == (
        "tcp://198.18.0.7:2376",
        "1",
        "/my/certs",
    )


def test_no_module_writes_the_engine_into_the_environment():
    """The engine is a value passed down (STYLE 7): nothing assigns DOCKER_* in os.environ."""
    import re
    from pathlib import Path

    package = Path(remote.__file__).parent
    writes = re.compile(
        r"os\.environ(\[\s*[\"']DOCKER_|\.(setdefault|pop|update)\(\s*[\"']DOCKER_)|os\.putenv|os\.unsetenv"
    )
    found = [
        f"{path.relative_to(package)}:{n}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if writes.search(line)
    ]
    assert found == []


def test_configured_context_is_read_without_validating_the_rest():
    assert remote.configured_context('[project]\ncontext = "big"\n[nonsense]\nx = 1\n') == "big"
    assert remote.configured_context("[project]\nname = 'x'\n") is None
    assert remote.configured_context("not toml [") is None


def _listening(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen()
    return sock


def test_without_docker_host_a_podman_socket_that_answers_is_used_when_dockers_does_not(
    contexts, tmp_path, monkeypatch
):
    """SPEC §6: a Podman-only machine needs no DOCKER_HOST: where Docker's socket does not answer,
    devup finds rootful Podman's, else the rootless user's (under XDG_RUNTIME_DIR)."""
    docker_sock, rootful = tmp_path / "docker.sock", tmp_path / "run-podman" / "podman.sock"
    monkeypatch.setattr(remote, "DEFAULT_HOST", f"unix://{docker_sock}")
    monkeypatch.setattr(remote, "PODMAN_HOST", f"unix://{rootful}")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "user"))
    rootless = _listening(tmp_path / "user" / "podman" / "podman.sock")
    assert remote.current() == remote.Engine("default", f"unix://{tmp_path}/user/podman/podman.sock")
    served = _listening(rootful)
    assert remote.current().host == f"unix://{rootful}"
    stale = _listening(docker_sock)
    stale.close()  # a socket file nobody listens on: Docker's daemon is stopped
    assert remote.current().host == f"unix://{rootful}"
    for sock in (rootless, served):
        sock.close()
    assert remote.current().host == f"unix://{docker_sock}"  # nothing answers: Docker's, named in errors
    _listening(tmp_path / "docker2.sock")
    monkeypatch.setattr(remote, "DEFAULT_HOST", f"unix://{tmp_path}/docker2.sock")
    assert remote.current().host == f"unix://{tmp_path}/docker2.sock"  # Docker's answers: Docker first


def test_an_answer_that_is_no_http_is_an_engine_error_naming_the_engine(tmp_path: Path) -> None:
    import threading

    from devup.engine import http
    from devup.errors import EngineError

    path = str(tmp_path / "not-an-engine.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def answer_garbage() -> None:
        conn, _ = server.accept()
        conn.recv(4096)
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        conn.close()

    threading.Thread(target=answer_garbage, daemon=True).start()
    with pytest.raises(EngineError) as info:
        http.get(remote.Engine(context=None, host=f"unix://{path}"), "/version")
    assert f"unix://{path}" in info.value.message and "no valid answer" in info.value.message
    server.close()
