"""TLS to Temporal: the real Temporal server (tools/temporal/build.sh, v1.32 from the Go module proxy) with TLS on
its frontend, a server certificate from a throw-away CA made with openssl. The `rollwright` CLI and a real worker
connect with ROLLWRIGHT_TEMPORAL_TLS_CA and run a rollout; a client trusting another CA fails with one clear line.

The server runs on SQLite in memory (its development-sqlite config, ports moved off the shared stack's), so this
test needs no PostgreSQL; the PostgreSQL path is tests/test_compose_real.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from orchestrator.setup import SEARCH_ATTRIBUTES
from tests.helpers import (
    BIN,
    ROOT,
    STATE,
    WorkerProcess,
    cli,
    configmap,
    free_port,
    wait_until,
    write_release,
)

# Cold, the fixtures build Go binaries and images (scripts/setup.sh normally did the Go part already).
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(3600)]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d)


def make_server_cert(d: Path, ca: str) -> None:
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
            "-out", "server.csr", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.pem", cwd=d)


def server_config(server_dir: Path, certs: Path, ports: dict[str, int]) -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load((server_dir / "config/development-sqlite.yaml").read_text())
    cfg["log"]["level"] = "warn"
    cfg["global"].pop("metrics", None)
    cfg["global"]["pprof"] = {"port": 0}
    cfg["global"]["tls"] = {"frontend": {
        "server": {"certFile": str(certs / "server.pem"), "keyFile": str(certs / "server.key"),
                   "requireClientAuth": False},
        # The server's own worker role dials the frontend too: it must trust the same CA.
        "client": {"serverName": "localhost", "rootCaFiles": [str(certs / "ca.pem")]}}}
    for svc in ("frontend", "history", "matching", "worker"):
        rpc = cfg["services"][svc]["rpc"]
        rpc["grpcPort"], rpc["membershipPort"] = ports[svc], free_port()
        if svc == "frontend":
            rpc["httpPort"] = free_port()
    info = cfg["clusterMetadata"]["clusterInformation"]["active"]
    info["rpcAddress"] = f"localhost:{ports['frontend']}"
    info["httpAddress"] = f"localhost:{cfg['services']['frontend']['rpc']['httpPort']}"
    return cfg


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    r = subprocess.run(["bash", str(ROOT / "tools/temporal/build.sh")], capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    server_dir = Path(r.stdout.split()[0])
    d = tmp_path_factory.mktemp("tls")
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_server_cert(d, "ca")
    ports = {s: free_port() for s in ("frontend", "history", "matching", "worker")}
    root = d / "root"
    (root / "config").mkdir(parents=True)
    shutil.copytree(server_dir / "config/dynamicconfig", root / "config/dynamicconfig")
    cfg = server_config(server_dir, d, ports)
    cfg["dynamicConfigClient"]["filepath"] = str(root / "config/dynamicconfig/development-sql.yaml")
    (root / "config/tls.yaml").write_text(yaml.safe_dump(cfg))
    log = STATE / "logs" / f"temporal-tls-{ports['frontend']}.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen([str(server_dir / "temporal-server"), "--root", str(root), "--config", "config",
                                 "--env", "tls", "--allow-no-auth", "start"], stdout=fh, stderr=fh,
                                cwd=root, start_new_session=True)
    address = f"127.0.0.1:{ports['frontend']}"
    tls_args = ["--address", address, "--tls-ca-path", str(d / "ca.pem")]
    try:
        wait_until(lambda: subprocess.run([str(BIN / "temporal"), "operator", "cluster", "health", *tls_args],
                                          capture_output=True).returncode == 0 or proc.poll() is not None,
                   120, interval=1, what="TLS server health")
        assert proc.poll() is None, log.read_text()[-3000:]
        subprocess.run([str(BIN / "temporal"), "operator", "namespace", "create", "--namespace", "default",
                        *tls_args], check=True, capture_output=True)
        yield {"address": address, "ca": d / "ca.pem", "other_ca": d / "other-ca.pem", "tls_args": tls_args}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_cli_and_worker_over_tls_and_a_wrong_ca_fails_clearly(tls_server: dict[str, Any], kubeconfig: Path,
                                                             cli_env: dict[str, str], namespace: str,
                                                             registry: str, tmp_path: Path) -> None:
    tq = f"rw-tls-{uuid.uuid4().hex[:6]}"
    tls_env = {"ROLLWRIGHT_TEMPORAL_ADDRESS": tls_server["address"], "ROLLWRIGHT_TEMPORAL_TLS_CA": str(tls_server["ca"]),
               "ROLLWRIGHT_TASK_QUEUE": tq}
    env = dict(cli_env, **tls_env)
    # The server's certificate is for localhost/127.0.0.1: verified, not skipped.
    r = cli("setup", env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert set(SEARCH_ATTRIBUTES) <= set(r.stdout.strip().split(": ", 1)[1].split(", "))

    # A worker over TLS, and a rollout started and followed by the CLI over TLS. The namespace cache picks up the
    # new search attributes within ~10 s: until then the server rejects starts that set them (retried here).
    w = WorkerProcess(tq, kubeconfig, name="tls", extra_env=tls_env)
    app = f"tls-{uuid.uuid4().hex[:6]}"
    spec = write_release(tmp_path, app=app, namespace=namespace, registry=registry, image=False,
                         objects=[configmap(f"{app}-cfg", {"OVER": "tls"})])
    try:
        w.start()
        for _ in range(20):
            r = cli("rollout", "start", "-f", str(spec), "--wait", "-o", "json", env=env, timeout=300)
            if "no mapping defined for search attribute" not in r.stderr:
                break
            time.sleep(3)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr
        assert json.loads(r.stdout)["outcome"] == "Succeeded", r.stdout[-2000:]
    finally:
        w.stop()

    # A client that trusts another CA: one line naming the address and the certificate problem, no traceback.
    bad = dict(env, ROLLWRIGHT_TEMPORAL_TLS_CA=str(tls_server["other_ca"]))
    r = cli("rollout", "list", env=bad, timeout=120)
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and len(err) <= 2, r.stderr
    assert err[0].startswith(f"error: cannot connect to Temporal at {tls_server['address']}: "), err
    assert "certificate" in err[0].lower() and str(tls_server["other_ca"]) in err[0], err
    # The worker with the wrong CA stays alive, not ready, and says why on /readyz.
    wb = WorkerProcess(tq, kubeconfig, name="tls-bad-ca", extra_env=dict(tls_env, ROLLWRIGHT_TEMPORAL_TLS_CA=str(
        tls_server["other_ca"])))
    try:
        wb.start(wait_ready=False)
        body = wait_until(lambda: (x := httpx.get(wb.url("/readyz"), timeout=2)).status_code == 503
                          and "certificate" in x.text.lower() and x.text, 60, what="worker /readyz reason")
        assert tls_server["address"] in body
    finally:
        wb.stop()
