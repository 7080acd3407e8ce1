"""Release bundles (orchestrator.bundle, activities.bundles) against the real registry and a real worker.

Packing is checked offline (determinism, .dockerignore, limits); push, inspect and fetch run against the local
registry; hostile bundles (path traversal, symlinks) are real artifacts pushed to it; the end-to-end test runs a
rollout whose worker reads only the bundle, and checks a path-only input is refused by the worker.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import uuid
from pathlib import Path

import httpx
import pytest
from kubernetes import client as k8s
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities import bundles as wb
from orchestrator import bundle as b
from orchestrator.client import RolloutClient, push_bundle
from orchestrator.loader import ReleaseError, load_spec, parse_spec
from orchestrator.models import Outcome
from tests.helpers import WorkerProcess, cli, deployment, write_release

session_loop = pytest.mark.asyncio(loop_scope="session")


def _release(tmp_path: Path, registry: str, app: str = "bnd", namespace: str = "bnd") -> Path:
    return write_release(tmp_path, app=app, namespace=namespace, registry=registry, objects=[deployment(app)])


# ---- packing, offline ----------------------------------------------------------------------------------------------


def test_pack_is_deterministic_and_honours_dockerignore(tmp_path: Path) -> None:
    spec_path = _release(tmp_path, "127.0.0.1:5000")
    ctx = tmp_path / "app"
    (ctx / "secret.env").write_text("TOKEN=nope\n")
    (ctx / "logs").mkdir()
    (ctx / "logs" / "x.log").write_text("noise\n")
    (ctx / ".dockerignore").write_text("secret.env\nlogs/\n")
    one, two = b.pack(load_spec(spec_path)), b.pack(load_spec(spec_path))
    assert one.digest == two.digest and one.manifest == two.manifest
    m = json.loads(one.manifest)
    assert m["artifactType"] == b.ARTIFACT_TYPE and m["config"]["mediaType"] == b.CONFIG_TYPE
    assert [d["mediaType"] for d in m["layers"]] == [b.MANIFESTS_TYPE, b.CONTEXT_TYPE]
    with tarfile.open(fileobj=io.BytesIO(one.layers[1].data), mode="r:gz") as t:
        names = t.getnames()
        assert all(x.mtime == 0 and x.uid == 0 for x in t.getmembers())
    assert "Dockerfile" in names and "secret.env" not in names and not any(n.startswith("logs") for n in names)
    config = json.loads(one.config.data)
    assert config["manifests"] == ["manifests-v1.yaml"] and "base_dir" not in config["spec"]
    # Any content change changes the digest.
    (ctx / "app.py").write_text((ctx / "app.py").read_text() + "\n# changed\n")
    assert b.pack(load_spec(spec_path)).digest != one.digest


@pytest.mark.parametrize(("var", "value", "reason"), [
    ("ROLLWRIGHT_BUNDLE_MAX_FILE_BYTES", "1000", "a file in a release bundle is at most 1000 bytes"),
    ("ROLLWRIGHT_BUNDLE_MAX_FILES", "3", "more than 3 files"),
    ("ROLLWRIGHT_BUNDLE_MAX_BYTES", "3000", "would exceed 3000 bytes"),
])
def test_limits_exit_2_before_anything_is_pushed(tmp_path: Path, registry: str, cli_env: dict[str, str],
                                                 var: str, value: str, reason: str) -> None:
    spec_path = _release(tmp_path, registry)
    repo = f"{registry}/rollwright-test/limits-{uuid.uuid4().hex[:8]}"
    r = cli("bundle", "push", "-f", str(spec_path), "--repository", repo, env={**cli_env, var: value})
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert reason in r.stderr and "nothing was built, pushed or applied" in r.stderr, r.stderr
    # Nothing reached the registry: the repository does not exist.
    tags = httpx.get(f"http://{repo.split('/', 1)[0]}/v2/{repo.split('/', 1)[1]}/tags/list")
    assert tags.status_code == 404, tags.text


# ---- registry: push, inspect, fetch ----------------------------------------------------------------------------


def test_push_inspect_fetch_by_digest_and_cache(tmp_path: Path, registry: str, cli_env: dict[str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    spec_path = _release(tmp_path / "rel", registry)
    r = cli("bundle", "push", "-f", str(spec_path), "-o", "json", env=cli_env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    ref = out["bundle"]
    assert ref.startswith(f"{registry}/rollwright-bundles/bnd@sha256:") and "base_dir" not in out["input"]
    # The registry serves exactly the manifest we computed, under its digest.
    repo, digest = b.parse_ref(ref)
    served = httpx.get(f"http://{registry}/v2/{repo.split('/', 1)[1]}/manifests/{digest}",
                       headers={"Accept": b.OCI_MANIFEST})
    assert served.status_code == 200 and served.headers["Docker-Content-Digest"] == digest
    assert served.content == b.pack(load_spec(spec_path)).manifest
    r = cli("bundle", "inspect", ref, "-o", "json", env=cli_env)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["config"]["spec"]["app"] == "bnd" and any("Dockerfile" in f for f in info["files"][b.CONTEXT_TYPE])

    monkeypatch.setenv("ROLLWRIGHT_BUNDLE_CACHE", str(tmp_path / "cache"))
    local = wb.local_spec(load_spec(spec_path).model_copy(update={"bundle": ref, "base_dir": "/nonexistent"}))
    assert Path(local.base_dir).is_relative_to(tmp_path / "cache") and local.manifests == ["manifests-v1.yaml"]
    assert (Path(local.base_dir) / "manifests-v1.yaml").read_bytes() == (tmp_path / "rel/manifests-v1.yaml").read_bytes()
    assert (tmp_path / "cache/blobs/sha256" / digest.split(":")[1]).is_file()
    # Cached per digest: a second resolve needs no registry at all.
    monkeypatch.setattr(b.Registry, "get_verified", lambda *a, **k: pytest.fail("fetched again despite the cache"))
    assert wb.local_spec(local.model_copy(update={"bundle": ref})).base_dir == local.base_dir


def _evil_bundle(member: tarfile.TarInfo, data: bytes = b"") -> b.Bundle:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as t:
        t.addfile(member, io.BytesIO(data) if data else None)
    layer = b.Blob(b.MANIFESTS_TYPE, buf.getvalue())
    config = b.Blob(b.CONFIG_TYPE, json.dumps({"manifests": ["app.yaml"], "context": False, "spec": {}}).encode())
    manifest = json.dumps({"schemaVersion": 2, "mediaType": b.OCI_MANIFEST, "artifactType": b.ARTIFACT_TYPE,
                           "config": config.descriptor(), "layers": [layer.descriptor()]}).encode()
    return b.Bundle(config, [layer], manifest)


def _member(name: str, *, link: str | None = None, size: int = 4) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    if link:
        ti.type, ti.linkname = tarfile.SYMTYPE, link
    else:
        ti.size = size
    return ti


@pytest.mark.parametrize("member", [
    _member("../../escaped.yaml"), _member("/tmp/abs.yaml"), _member("app.yaml", link="/etc/passwd"),
    _member("a/../../x.yaml"),
], ids=["dotdot", "absolute", "symlink", "nested-dotdot"])
def test_hostile_bundles_are_refused_and_write_nothing_outside_the_cache(
        tmp_path: Path, registry: str, member: tarfile.TarInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLWRIGHT_BUNDLE_CACHE", str(tmp_path / "cache"))
    with b.Registry(f"{registry}/rollwright-test/evil") as reg:
        ref = reg.push(_evil_bundle(member, b"" if member.issym() else b"x: 1"))
    spec = load_spec(_release(tmp_path / "rel", registry)).model_copy(update={"bundle": ref})
    with pytest.raises(ApplicationError) as e:
        wb.local_spec(spec)
    assert e.value.type == "InvalidRelease" and e.value.non_retryable and "safe relative name" in e.value.message
    assert not (tmp_path / "escaped.yaml").exists() and not Path("/tmp/abs.yaml").exists()
    assert not list((tmp_path / "cache/trees").iterdir())  # the temporary extraction was removed


def test_unknown_digest_and_path_input_are_invalid(tmp_path: Path, registry: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLWRIGHT_BUNDLE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ROLLWRIGHT_PATH_RELEASES", raising=False)
    spec = load_spec(_release(tmp_path, registry))
    with pytest.raises(ApplicationError) as e:
        wb.local_spec(spec.model_copy(update={"bundle": f"{registry}/rollwright-test/none@sha256:{'0' * 64}"}))
    assert e.value.type == "InvalidRelease" and "not found" in e.value.message
    with pytest.raises(ApplicationError) as e:
        wb.local_spec(spec)  # base_dir set, no bundle: the worker opens nothing
    assert e.value.type == "InvalidRelease" and "only runs release bundles" in e.value.message
    with pytest.raises(ReleaseError, match="bundle"):  # a tag is not a bundle reference: content only
        parse_spec({**spec.model_dump(), "bundle": "127.0.0.1:5000/x/y:latest"})


# ---- end to end -------------------------------------------------------------------------------------------------


@pytest.mark.e2e
@session_loop
async def test_rollout_reads_only_the_bundle(tmp_path: Path, temporal: Client, kubeconfig: Path, registry: str,
                                             namespace: str, apps: k8s.AppsV1Api) -> None:
    queue = f"rw-bundle-{uuid.uuid4().hex[:6]}"
    cache = tmp_path / "worker-cache"
    w = WorkerProcess(queue, kubeconfig, name="bundles", extra_env={"ROLLWRIGHT_BUNDLE_CACHE": str(cache),
                                                                   "ROLLWRIGHT_PATH_RELEASES": "false"})
    w.start()
    try:
        app = f"bnd-{uuid.uuid4().hex[:5]}"
        spec_path = write_release(tmp_path / "rel", app=app, namespace=namespace, registry=registry,
                                  objects=[deployment(app)])
        rc = RolloutClient(temporal, queue)
        handle = await rc.start(load_spec(spec_path))
        res = await rc.result(handle)
        assert res.outcome == Outcome.SUCCEEDED, res.cause
        assert apps.read_namespaced_deployment(app, namespace).spec.template.spec.containers[0].image == res.image
        hist = await handle.fetch_history()
        started = hist.events[0].workflow_execution_started_event_attributes
        inp = (await temporal.data_converter.decode(started.input.payloads, [dict]))[0]
        assert inp["base_dir"] == "." and inp["bundle"].startswith(f"{registry}/rollwright-bundles/{app}@sha256:")
        assert str(tmp_path) not in json.dumps(inp)  # no path of this machine reached the workflow
        digest = inp["bundle"].split("@")[1].split(":")[1]
        assert (cache / "blobs/sha256" / digest).is_file()  # the worker fetched it by digest into its cache

        # The same release as a path-only input (what a pre-bundle client sent): refused, nothing applied.
        path_spec = load_spec(spec_path).model_copy(update={"app": f"{app}-p"})
        h2 = await temporal.start_workflow("RolloutWorkflow", path_spec, id=f"rollout.{app}-p.test", task_queue=queue)
        with pytest.raises(WorkflowFailureError):
            await h2.result()
        res2 = await rc.result(h2)
        assert res2.outcome == Outcome.FAILED and res2.error_type == "InvalidRelease", res2
        assert "only runs release bundles" in (res2.cause or "")
        assert not [d for d in apps.list_namespaced_deployment(namespace).items if d.metadata.name == f"{app}-p"]
    finally:
        w.stop()


def test_push_bundle_resets_base_dir(tmp_path: Path, registry: str) -> None:
    pushed = push_bundle(load_spec(_release(tmp_path, registry)))
    assert pushed.base_dir == "." and pushed.bundle and b.REF_RE.match(pushed.bundle)


@pytest.mark.e2e
@session_loop
async def test_worker_without_engine_refuses_an_image_release_at_validation(
        tmp_path: Path, temporal: Client, kubeconfig: Path, registry: str, namespace: str,
        apps: k8s.AppsV1Api) -> None:
    """The prod overlay's and chart's default (ROLLWRIGHT_DOCKER_ENGINE=none): exit-2 failure before any side effect."""
    queue = f"rw-noengine-{uuid.uuid4().hex[:6]}"
    w = WorkerProcess(queue, kubeconfig, name="noengine", extra_env={"ROLLWRIGHT_DOCKER_ENGINE": "none"})
    w.start()
    try:
        app = f"ne-{uuid.uuid4().hex[:5]}"
        spec_path = write_release(tmp_path, app=app, namespace=namespace, registry=registry, objects=[deployment(app)])
        rc = RolloutClient(temporal, queue)
        res = await rc.result(await rc.start(load_spec(spec_path)))
        assert res.outcome == Outcome.FAILED and res.failed_step is not None and res.failed_step.value == "Validate"
        assert res.error_type == "InvalidRelease" and "has no Docker engine" in (res.cause or ""), res
        assert apps.list_namespaced_deployment(namespace).items == []
    finally:
        w.stop()
