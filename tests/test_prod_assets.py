"""Static checks of the production assets: the compose stack's local Dockerfiles pass hadolint, every compose
configuration we document renders, and the backup CronJob example is accepted by a real API server (server-side
dry run, in a scratch namespace)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOCKERFILES = sorted((ROOT / "deploy/compose/images").glob("*/Dockerfile"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[p.parent.name for p in DOCKERFILES])
def test_local_image_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    r = subprocess.run([str(BIN / "hadolint"), str(dockerfile)], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_local_env_selects_the_real_images_and_wires_the_codec_endpoint(tmp_path: Path) -> None:
    kc = tmp_path / "kubeconfig"
    kc.write_text("apiVersion: v1\nkind: Config\n")
    env = dict(os.environ, ROLLWRIGHT_KUBECONFIG_HOST=str(kc), TEMPORAL_CODEC_ENDPOINT="http://127.0.0.1:8899",
               ROLLWRIGHT_CODEC_KEYS="k1=x")
    r = subprocess.run(["docker", "compose", "--env-file", str(ROOT / "deploy/compose/local.env"), "--profile",
                        "encryption", "config", "--format", "json"], cwd=ROOT, env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    svc = json.loads(r.stdout)["services"]
    versions = dict(x.split("=", 1) for x in (ROOT / "tools/temporal/versions.env").read_text().splitlines()
                    if x and not x.startswith("#"))
    assert svc["temporal"]["image"] == f"rollwright/temporal:{versions['TEMPORAL_SERVER_VERSION']}"
    assert svc["temporal-ui"]["image"] == f"rollwright/temporal-ui:{versions['TEMPORAL_UI_VERSION']}"
    assert svc["postgresql"]["image"] == "rollwright/postgres:15"
    assert svc["temporal-ui"]["environment"]["TEMPORAL_CODEC_ENDPOINT"] == "http://127.0.0.1:8899"
    assert svc["worker"]["environment"]["ROLLWRIGHT_CODEC_KEYS"] == "k1=x"
    assert svc["codec-server"]["command"][0] == "codec-server"
    for s, dep in (("temporal", "postgresql"), ("temporal-ui", "temporal"), ("worker", "temporal")):
        assert svc[s]["depends_on"][dep]["condition"] == "service_healthy", s


@pytest.mark.e2e
def test_backup_cronjob_example_is_accepted_by_the_api_server(kubeconfig: Path, namespace: str) -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy/k8s/temporal-backup-cronjob.yaml").read_text()))
    assert {d["kind"] for d in docs} == {"PersistentVolumeClaim", "CronJob"}
    for d in docs:
        d["metadata"]["namespace"] = namespace
    r = subprocess.run(["kubectl", "apply", "--dry-run=server", "-o", "name", "-f", "-"],
                       input=yaml.safe_dump_all(docs), env=dict(os.environ, KUBECONFIG=str(kubeconfig)),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "cronjob.batch/temporal-pg-backup" in r.stdout
