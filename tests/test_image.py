"""The worker's container image (Dockerfile): builds, runs as the fixed non-root user, has a working CLI, and
passes hadolint. Run by the test suite (scripts/test.sh); a cold build takes minutes (pip installs the deps).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parent.parent
TAG = "rollwright/worker:test"


def _inspect(ref: str) -> dict[str, Any]:
    out = subprocess.run(["docker", "image", "inspect", ref], capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out)[0])


def _run(*args: str, entrypoint: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["docker", "run", "--rm"] + (["--entrypoint", entrypoint] if entrypoint else []) + [TAG, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def image(stack: None) -> dict[str, Any]:
    """Built once, with the docker CLI as a developer would (legacy builder: the only one this engine has)."""
    t0 = time.monotonic()
    r = subprocess.run(["docker", "build", "--build-arg", "BASE_IMAGE=rollwright/python-base:3.11", "-t", TAG, "."],
                       cwd=ROOT, env=dict(os.environ, DOCKER_BUILDKIT="0"), capture_output=True, text=True,
                       timeout=1500)
    assert r.returncode == 0, f"docker build failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    info = _inspect(TAG)
    print(f"\n{TAG}: {info['Id'][:19]} size {info['Size'] / 1e6:.1f} MB ({info['Size']} bytes), "
          f"built in {time.monotonic() - t0:.0f}s")
    return info


def test_image_runs_as_uid_10001(image: dict[str, Any]) -> None:
    # The k8s securityContext (runAsUser 10001, runAsNonRoot) relies on a numeric USER in the image.
    assert image["Config"]["User"] == "10001:10001"
    r = _run("-c", "import os; print(os.getuid(), os.getgid())", entrypoint="python3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["10001", "10001"]


def test_rollwright_version_works_inside(image: dict[str, Any]) -> None:
    r = _run("--version")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "rollwright, version 0.1.0"
    # The default command is the worker, as compose and k8s expect.
    assert image["Config"]["Entrypoint"] == ["rollwright"] and image["Config"]["Cmd"] == ["worker"]


def test_image_holds_no_build_tooling(image: dict[str, Any]) -> None:
    # pip and the ~150 MB temporal CLI are removed on purpose (Dockerfile comments); a refactor that brings them
    # back should fail here, not only show up as a bigger image.
    r = _run("-c", "ls /opt/venv/bin", entrypoint="sh")
    assert r.returncode == 0, r.stderr
    names = set(r.stdout.split())
    assert "rollwright" in names and not {"pip", "pip3", "temporal"} & names, names


def test_hadolint_reports_nothing() -> None:
    r = subprocess.run([str(Path(sys.executable).parent / "hadolint"), "Dockerfile"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
