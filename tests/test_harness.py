"""The test harness's own promise: a guarantee that cannot be checked here fails the run, unless
an explicit opt-out says so, loudly (as DEVUP_SKIP_DOCKER_TESTS does for the Docker tests)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A test on the remote engine of tests/test_remote.py, where the namespace (or sshd) cannot be
# made: tests/remote_engine.py's context managers are replaced by ones that raise Unavailable.
PROBE = """
import contextlib

from tests import test_remote
from tests.remote_engine import Unavailable
from tests.test_remote import remote, remote_ssh  # noqa: F401  (the fixtures under test)


@contextlib.contextmanager
def no_namespace(image):
    raise Unavailable("simulated: cannot create a network namespace")
    yield


@contextlib.contextmanager
def an_engine(image):
    yield None


@contextlib.contextmanager
def no_sshd(engine):
    raise Unavailable("simulated: cannot run sshd")
    yield


MISSING = {missing!r}
if MISSING == "namespace":
    test_remote.remote_engine = no_namespace
else:
    test_remote.remote_engine, test_remote.ssh_endpoint = an_engine, no_sshd


def test_on_the_remote_engine(remote, remote_ssh):
    pass
"""


def run_probe(tmp_path: Path, missing: str, *, opt_out: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_probe.py").write_text(textwrap.dedent(PROBE.format(missing=missing)))
    env = {k: v for k, v in os.environ.items() if k != "DEVUP_SKIP_REMOTE_TESTS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    if opt_out:
        env["DEVUP_SKIP_REMOTE_TESTS"] = "1"
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", "-p", "tests.conftest"),
            *("-W", "ignore::pytest.PytestUnknownMarkWarning"),  # `docker` is registered in pyproject.toml
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("missing", ["namespace", "sshd"])
def test_remote_tests_that_cannot_run_fail_unless_explicitly_skipped(tmp_path, missing):
    failed = run_probe(tmp_path, missing, opt_out=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "1 error" in failed.stdout and "simulated" in failed.stdout, failed.stdout
    assert "DEVUP_SKIP_REMOTE_TESTS=1" in failed.stdout, failed.stdout  # how to opt out

    skipped = run_probe(tmp_path, missing, opt_out=True)
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "1 skipped" in skipped.stdout and "simulated" in skipped.stdout, skipped.stdout
    banner = skipped.stdout + skipped.stderr
    assert "DEVUP_SKIP_REMOTE_TESTS=1" in banner and "NOT" in banner, banner
