"""Payload encryption (orchestrator/codec.py) and the codec server (orchestrator/codec_server.py).

Unit tests cover the codec and key configuration. The e2e tests run real rollouts on the shared dev server through
the real `rollwright` CLI and a real worker process, both with encryption on, then read the raw history with
`temporal workflow show -o json`: every string in it — and every base64 blob decoded — must be free of the release
spec's values, the result, the approval comment and the abort reason; with `--codec-endpoint` pointing at
`rollwright codec-server` they are readable, and search attributes are readable either way. Key rotation: a
rollout started under key 1 finishes on a worker whose encrypting key is key 2, and stays readable.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from temporalio.api.common.v1 import Payload

from orchestrator.codec import CodecError, EncryptionCodec, KeyRing
from orchestrator.codec_server import make_app
from orchestrator.config import ConfigError, load_settings
from tests.helpers import (
    BIN,
    TEMPORAL_ADDRESS,
    HealthTarget,
    WorkerProcess,
    cli,
    configmap,
    free_port,
    wait_until,
    write_release,
)

K1, K2 = os.urandom(32), os.urandom(32)


def b64(k: bytes) -> str:
    return base64.b64encode(k).decode()


def ring(*ids: str, enc: str | None = None) -> KeyRing:
    keys = {"k1": K1, "k2": K2}
    return KeyRing({i: keys[i] for i in ids}, enc or ids[-1])


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


# ---- unit: the codec and its configuration --------------------------------------------------------------------

async def test_roundtrip_hides_data_and_names_the_key() -> None:
    codec = EncryptionCodec(ring("k1"))
    [enc] = await codec.encode([plain("s3cret-value")])
    assert enc.metadata["encoding"] == b"binary/encrypted" and enc.metadata["encryption-key-id"] == b"k1"
    assert b"s3cret" not in enc.data and b"json/plain" not in enc.data
    [dec] = await codec.decode([enc])
    assert dec == plain("s3cret-value")
    [again] = await codec.encode([plain("s3cret-value")])
    assert again.data != enc.data  # a fresh nonce per payload


async def test_rotation_old_key_still_decrypts_new_key_encrypts() -> None:
    [old] = await EncryptionCodec(ring("k1")).encode([plain("written under k1")])
    rotated = EncryptionCodec(ring("k1", "k2", enc="k2"))
    assert await rotated.decode([old]) == [plain("written under k1")]
    [new] = await rotated.encode([plain("x")])
    assert new.metadata["encryption-key-id"] == b"k2"
    with pytest.raises(CodecError, match=r"key ID 'k2', which is not configured \(known: k1\)"):
        await EncryptionCodec(ring("k1")).decode([new])


async def test_tampered_or_relabelled_payload_is_rejected_and_plain_passes_through() -> None:
    codec = EncryptionCodec(ring("k1", "k2", enc="k1"))
    [enc] = await codec.encode([plain("v")])
    bad = Payload(metadata=enc.metadata, data=enc.data[:-1] + bytes([enc.data[-1] ^ 1]))
    with pytest.raises(CodecError, match="failed authentication"):
        await codec.decode([bad])
    relabelled = Payload(metadata=dict(enc.metadata, **{"encryption-key-id": b"k2"}), data=enc.data)
    with pytest.raises(CodecError, match="failed authentication"):
        await codec.decode([relabelled])
    assert await codec.decode([plain("from a tool without codec")]) == [plain("from a tool without codec")]


def test_key_configuration_errors_name_the_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k in [k for k in os.environ if k.startswith("ROLLWRIGHT_CODEC")]:
        monkeypatch.delenv(k)
    assert load_settings().key_ring() is None
    with pytest.raises(ConfigError, match=r"ROLLWRIGHT_CODEC_KEYS entry 1 \(key 'k1'\): not valid base64"):
        load_settings(codec_keys="k1=not*base64")
    with pytest.raises(ConfigError, match="AES-256 needs 32 bytes, got 16"):
        load_settings(codec_keys=f"k1={b64(os.urandom(16))}")
    with pytest.raises(ConfigError, match="set ROLLWRIGHT_CODEC_KEY_ID"):
        load_settings(codec_keys=f"k1={b64(K1)},k2={b64(K2)}")
    with pytest.raises(ConfigError, match=r"ROLLWRIGHT_CODEC_KEY_ID='k3' is not among the configured keys \(k1, k2\)"):
        load_settings(codec_keys=f"k1={b64(K1)},k2={b64(K2)}", codec_key_id="k3")
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(codec_keys_file=tmp_path / "missing")
    # A mounted Kubernetes Secret: one file per key, plus the kubelet's hidden ..data entries.
    d = tmp_path / "secret"
    d.mkdir()
    (d / "k1").write_text(b64(K1) + "\n")
    (d / "k2").write_text(b64(K2))
    (d / "..data").mkdir()
    r = load_settings(codec_keys_file=d, codec_key_id="k2").key_ring()
    assert r is not None and dict(r.keys) == {"k1": K1, "k2": K2} and r.encrypt_id == "k2"
    f = tmp_path / "keys"
    f.write_text(f"# rotated 2026-11\nk1={b64(K1)}\n\nk2={b64(K2)}\n")
    r = load_settings(codec_keys_file=f, codec_key_id="k1").key_ring()
    assert r is not None and r.encrypt_id == "k1" and set(r.keys) == {"k1", "k2"}
    assert b64(K1) not in repr(load_settings(codec_keys=f"k1={b64(K1)}"))  # never in a log line


async def test_codec_server_cors_and_bearer_token() -> None:
    """The aiohttp app on a real socket (aiohttp's test server), called over HTTP as the UI and CLI do."""
    from aiohttp.test_utils import TestServer

    codec = EncryptionCodec(ring("k1"))
    server = TestServer(make_app(codec, cors_origins=["http://ui.example"], auth_token="t0ken"))
    await server.start_server()
    url = f"http://127.0.0.1:{server.port}"
    body = {"payloads": [{"metadata": {"encoding": b64(b"json/plain")}, "data": b64(b'"hello"')}]}
    try:
        async with aiohttp.ClientSession() as s:
            pre = {"Origin": "http://ui.example", "Access-Control-Request-Method": "POST",
                   "Access-Control-Request-Headers": "content-type,x-namespace"}
            async with s.options(f"{url}/decode", headers=pre) as r:
                assert r.status == 204
                assert r.headers["Access-Control-Allow-Origin"] == "http://ui.example"
                assert "X-Namespace" in r.headers["Access-Control-Allow-Headers"]
            async with s.options(f"{url}/decode", headers=dict(pre, Origin="http://evil.example")) as r:
                assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
            async with s.post(f"{url}/encode", json=body) as r:
                assert r.status == 401
            auth = {"Authorization": "Bearer t0ken", "Origin": "http://ui.example", "X-Namespace": "default"}
            async with s.post(f"{url}/encode", json=body, headers=auth) as r:
                assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "http://ui.example"
                enc = await r.json()
            meta = enc["payloads"][0]["metadata"]
            assert base64.b64decode(meta["encoding"]) == b"binary/encrypted"
            assert base64.b64decode(meta["encryption-key-id"]) == b"k1"
            async with s.post(f"{url}/decode", json=enc, headers=dict(auth, Authorization="Bearer wrong")) as r:
                assert r.status == 401
            async with s.post(f"{url}/decode", json=enc, headers=auth) as r:
                assert r.status == 200 and await r.json() == body
            async with s.post(f"{url}/decode", data="not json", headers=auth) as r:
                assert r.status == 400 and "Payloads JSON" in (await r.json())["error"]
    finally:
        await server.close()


# ---- e2e: encrypted rollouts on the real dev server -------------------------------------------------------------

def clear_text(obj: Any) -> str:
    """Every string in a JSON document, plus every base64 string decoded: what anyone reading the raw history
    (or the database) could read without the key."""
    out: list[str] = []

    def walk(o: Any) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                out.append(str(k))
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
        elif isinstance(o, str):
            out.append(o)
            try:
                out.append(base64.b64decode(o, validate=True).decode("utf-8", "replace"))
            except ValueError:
                pass
        else:
            out.append(str(o))

    walk(obj)
    return "\n".join(out)


def show(wid: str, *extra: str, address: str = TEMPORAL_ADDRESS) -> dict[str, Any]:
    r = subprocess.run([str(BIN / "temporal"), "workflow", "show", "-w", wid, "-o", "json", "--address",
                        address, *extra], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def codec_env(keys: str, key_id: str | None = None) -> dict[str, str]:
    env = {"ROLLWRIGHT_CODEC_KEYS": keys}
    if key_id:
        env["ROLLWRIGHT_CODEC_KEY_ID"] = key_id
    return env


class CodecServer:
    """`rollwright codec-server` as a process."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([str(BIN / "rollwright"), "codec-server", "--port", str(self.port), *args],
                                     env=dict(os.environ, **env), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        wait_until(lambda: httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200, 30,
                   what="codec server /healthz")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def tq() -> str:
    return f"rw-codec-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def k1_worker(kubeconfig: Path, tq: str) -> Iterator[WorkerProcess]:
    w = WorkerProcess(tq, kubeconfig, name="codec-k1", extra_env=codec_env(f"k1={b64(K1)}"))
    w.start()
    yield w
    w.stop()


def _cli_env(cli_env: dict[str, str], tq: str, keys: dict[str, str]) -> dict[str, str]:
    return dict(cli_env, ROLLWRIGHT_TASK_QUEUE=tq, **keys)


def _start(env: dict[str, str], spec: Path) -> str:
    r = cli("rollout", "start", "-f", str(spec), "-o", "json", env=env, check=True)
    wid: str = json.loads(r.stdout)["workflow_id"]
    return wid


def _status(env: dict[str, str], app: str) -> dict[str, Any]:
    r = cli("rollout", "status", "--app", app, "--env", "test", "-o", "json", env=env, check=True)
    st: dict[str, Any] = json.loads(r.stdout)
    return st


def _release(tmp: Path, app: str, namespace: str, registry: str, token: str, health_url: str) -> Path:
    return write_release(tmp / app, app=app, namespace=namespace, registry=registry, image=False,
                         version=f"v{token}", objects=[configmap(f"{app}-cfg", {"SETTING": f"value-{token}"})],
                         health={"progress_deadline_seconds": 60, "http": [
                             {"url": f"{health_url}?probe={token}", "interval_seconds": 0.3}]},
                         extra={"approval": {"required": True}})


@pytest.mark.e2e
async def test_history_is_encrypted_and_readable_through_the_codec_server(
        k1_worker: WorkerProcess, cli_env: dict[str, str], tq: str, namespace: str, registry: str,
        tmp_path: Path) -> None:
    env = _cli_env(cli_env, tq, codec_env(f"k1={b64(K1)}"))
    token = uuid.uuid4().hex[:10]
    target = HealthTarget()
    ok_app, ab_app = f"enc-ok-{token[:5]}", f"enc-ab-{token[:5]}"
    comment, reason = f"ship-it-{token}", f"change-freeze-{token}"
    try:
        ok_wid = _start(env, _release(tmp_path, ok_app, namespace, registry, token, target.url))
        ab_wid = _start(env, _release(tmp_path, ab_app, namespace, registry, token, target.url))
        for app in (ok_app, ab_app):
            wait_until(lambda app=app: _status(env, app)["awaiting_approval"], 60, interval=1,
                       what=f"{app} at its approval gate")
        cli("rollout", "approve", "--app", ok_app, "--env", "test", "--comment", comment, env=env, check=True)
        cli("rollout", "abort", "--app", ab_app, "--env", "test", "--reason", reason, env=env, check=True)
        r = cli("rollout", "watch", "--app", ok_app, "--env", "test", "-o", "json", env=env, timeout=180)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr
        r = cli("rollout", "watch", "--app", ab_app, "--env", "test", "-o", "json", env=env, timeout=180)
        assert r.returncode == 5, r.stdout[-2000:] + r.stderr  # aborted
        # The CLI, with the key, reads the result (decrypted by the Python client).
        st = _status(env, ok_app)
        assert st["outcome"] == "Succeeded" and st["approval_comment"] == comment
    finally:
        target.close()

    secrets = [namespace, f"manifests-v{token}.yaml", f"probe={token}", comment, reason, "Succeeded: ",
               "aborted by operator", f"{ok_app}-cfg"]
    codec = CodecServer(codec_env(f"k1={b64(K1)}"))
    try:
        for wid, app in ((ok_wid, ok_app), (ab_wid, ab_app)):
            raw = show(wid)
            text = clear_text(raw)
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"{wid}: found in clear in the raw history: {leaked}"
            # The scanner does read base64 payloads: the search attributes are there, readable by design.
            assert f'"{app}"' in text and ("Succeeded" in text or "Aborted" in text)
            encodings = {base64.b64decode(p["metadata"]["encoding"]) for p in _payloads(raw)}
            assert b"binary/encrypted" in encodings and b"json/plain" in encodings  # plain = search attributes
            decoded = clear_text(show(wid, "--codec-endpoint", codec.url))
            assert namespace in decoded and f"probe={token}" in decoded
            assert (comment if app == ok_app else reason) in decoded
    finally:
        codec.stop()

    # Search attributes stay queryable: that is what `rollwright rollout list` and the UI's filters use.
    r = subprocess.run([str(BIN / "temporal"), "workflow", "list", "--address", TEMPORAL_ADDRESS, "-o", "json",
                        "--query", f'RolloutApp="{ok_app}" AND RolloutOutcome="Succeeded"'],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and ok_wid in r.stdout, r.stdout + r.stderr
    r = cli("rollout", "list", "--app", ab_app, "-o", "json", env=env, check=True)
    assert [x["outcome"] for x in json.loads(r.stdout)] == ["Aborted"]


def _payloads(doc: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def walk(o: Any) -> None:
        if isinstance(o, dict):
            if isinstance(o.get("metadata"), dict) and "encoding" in o["metadata"]:
                found.append(o)
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(doc)
    return found


@pytest.mark.e2e
async def test_key_rotation_in_flight(kubeconfig: Path, cli_env: dict[str, str], tq: str, namespace: str,
                                      registry: str, tmp_path: Path) -> None:
    """Started under key 1, approved and finished after key 2 became the encrypting key (a new worker process
    that replays the key-1 history): the run succeeds, and its whole history is readable with the rotated ring."""
    k1 = codec_env(f"k1={b64(K1)}")
    rotated = codec_env(f"k1={b64(K1)},k2={b64(K2)}", "k2")
    token = uuid.uuid4().hex[:10]
    app = f"rot-{token[:6]}"
    target = HealthTarget()
    w1 = WorkerProcess(tq, kubeconfig, name="codec-rot-k1", extra_env=k1)
    w2 = WorkerProcess(tq, kubeconfig, name="codec-rot-k2", extra_env=rotated)
    try:
        w1.start()
        wid = _start(_cli_env(cli_env, tq, k1), _release(tmp_path, app, namespace, registry, token, target.url))
        wait_until(lambda: _status(_cli_env(cli_env, tq, k1), app)["awaiting_approval"], 60, interval=1,
                   what="approval gate")
        w1.stop()
        w2.start()
        env2 = _cli_env(cli_env, tq, rotated)
        cli("rollout", "approve", "--app", app, "--env", "test", "--comment", f"after-rotation-{token}",
            env=env2, check=True)
        r = cli("rollout", "watch", "--app", app, "--env", "test", env=env2, timeout=180)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    finally:
        w1.stop()
        w2.stop()
        target.close()
    raw = show(wid)
    key_ids = {base64.b64decode(p["metadata"]["encryption-key-id"]).decode() for p in _payloads(raw)
               if "encryption-key-id" in p["metadata"]}
    assert key_ids == {"k1", "k2"}, key_ids  # input under k1, everything after the rotation under k2
    both = CodecServer(rotated)
    only_new = CodecServer(codec_env(f"k2={b64(K2)}"))
    try:
        text = clear_text(show(wid, "--codec-endpoint", both.url))
        assert namespace in text and f"after-rotation-{token}" in text
        # Without the retired key the start input is unreadable: keep old keys as long as their histories.
        r = subprocess.run([str(BIN / "temporal"), "workflow", "show", "-w", wid, "-o", "json", "--address",
                            TEMPORAL_ADDRESS, "--codec-endpoint", only_new.url], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode != 0 or namespace not in r.stdout
    finally:
        both.stop()
        only_new.stop()
