"""An engine behind TLS (SPEC §6): `DOCKER_HOST=tcp://…` with `DOCKER_TLS_VERIFY` and
`DOCKER_CERT_PATH`, as the docker CLI and compose read them.

The engine is the machine's own, behind a TLS front on 127.0.0.1 that this test runs: it asks
for a client certificate of its own authority and passes the bytes to the engine's socket. So
devup's reads (which take the SDK's TLS session here), compose and the readiness wait all cross
TLS, and the front counts the connections that did.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import certifi
import pytest

from tests import world
from tests.conftest import busybox_web, isolated

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]
ENGINE_SOCKET = "/var/run/docker.sock"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(where: Path) -> None:
    """ca.pem; server-cert/key for 127.0.0.1; cert.pem/key.pem, the client's (what DOCKER_CERT_PATH holds)."""
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
        "-days", "1", "-subj", "/CN=devup-test-ca", cwd=where,
    )  # fmt: skip
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        (where / f"{name}.ext").write_text(ext + "\n")
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
            "-subj", f"/CN={name}", cwd=where,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
            "-CAcreateserial", "-out", f"{name}-cert.pem", "-days", "1", "-extfile", f"{name}.ext", cwd=where,
        )  # fmt: skip
    (where / "cert.pem").write_bytes((where / "client-cert.pem").read_bytes())
    (where / "key.pem").write_bytes((where / "client-key.pem").read_bytes())


class TlsFront:
    """Accepts TLS connections that show a client certificate of the test's authority and passes
    their bytes to the engine's unix socket."""

    def __init__(self, certs: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certs / "server-cert.pem", certs / "server-key.pem")
        self.context.load_verify_locations(certs / "ca.pem")
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._one, args=(raw,), daemon=True).start()

    def _one(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return  # no certificate of ours: refused, as dockerd --tlsverify would
        self.connections += 1
        engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        engine.connect(ENGINE_SOCKET)

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pump, args=(engine, client), daemon=True).start()
        pump(client, engine)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def tls_engine(tmp_path: Path) -> Iterator[tuple[dict[str, str], TlsFront]]:
    certs = tmp_path / "certs"
    certs.mkdir()
    _certificates(certs)
    front = TlsFront(certs)
    env = {
        "DOCKER_HOST": f"tcp://127.0.0.1:{front.port}",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(certs),
        # As on many machines: a CA bundle for requests, which must not replace the engine's CA.
        "REQUESTS_CA_BUNDLE": certifi.where(),
    }
    yield env, front
    front.close()


def test_a_session_on_an_engine_behind_tls_comes_up_reads_and_goes(make, tls_engine) -> None:
    env, front = tls_engine
    repo = make(isolated("container") + '[groups.app]\nfiles = ["app.yaml"]\n', {"app.yaml": busybox_web()})
    up = repo.devup("up", "s", "--json", env=env)
    assert up.returncode == 0, up.stderr
    assert front.connections > 0  # it did go through TLS
    # Through the engine itself (its own socket, no TLS): the session's container runs, healthy.
    running = world.docker(
        "ps", "--filter", f"label=dev.devup.repo={repo.repo_id}", "--format", "{{.Status}}"
    )  # fmt: skip
    assert "(healthy)" in running, running
    status = repo.devup("status", "s", "--json", env=env)
    assert status.returncode == 0, status.stderr
    units = json.loads(status.stdout)["units"]
    assert units and all(u["healthy"] for u in units), units
    assert json.loads(repo.devup("ls", "--json", env=env).stdout)[0]["status"] == "up"
    down = repo.devup("down", "s", env=env)
    assert down.returncode == 0, down.stderr
    for kind in ("container", "network", "volume"):
        assert world.labelled(kind, repo_id=repo.repo_id) == [], kind


def test_a_client_without_the_certificates_is_refused_by_the_front(make, tls_engine) -> None:
    """The control: the front really asks for TLS with a client certificate."""
    env, front = tls_engine
    repo = make(isolated("container") + '[groups.app]\nfiles = ["app.yaml"]\n', {"app.yaml": busybox_web()})
    plain = repo.devup("up", "s", env={"DOCKER_HOST": env["DOCKER_HOST"]})
    assert plain.returncode != 0
    assert front.connections == 0
    assert world.worktree_paths(repo.path) == [repo.path]
