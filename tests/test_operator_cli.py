"""`rollwright` as an operator uses it: following, steering, approving, listing — run as real subprocesses.

Output is captured the way CI sees it (a pipe, no TTY) and, for the live view, through a pseudo-terminal. Exit
codes are the documented ones (0 succeeded, 2 refused, 3 rolled back, 5 aborted, 7 not found); `-o json` output is
validated against the pydantic models; errors are one line plus a hint and never a traceback without `--debug`.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import shlex
import struct
import subprocess
import termios
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from temporalio.client import Client, WorkflowExecutionStatus

from orchestrator.client import RolloutClient
from orchestrator.models import Outcome, Phase, RolloutResult, RolloutStatus, Step
from tests.helpers import (
    BIN,
    ROOT,
    HealthTarget,
    WorkerProcess,
    activity_counts,
    cli,
    deployment,
    history_events,
    wait_until,
    write_release,
)

pytestmark = pytest.mark.e2e
session_loop = pytest.mark.asyncio(loop_scope="session")

ESC = "\x1b"
LIST_KEYS = {"workflow_id", "run_id", "status", "app", "environment", "phase", "outcome", "image", "start_time",
             "close_time"}
HISTORY_KEYS = {"revision", "status", "image", "created_at", "updated_at", "cause", "workflow_id", "run_id",
                "source_revision", "objects"}


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


class Proc:
    """A `rollwright` subprocess whose output is collected while it runs, through a pipe or a pseudo-terminal."""

    def __init__(self, *args: str, env: dict[str, str], tty: bool = False) -> None:
        self.chunks: list[str] = []
        argv = [str(BIN / "rollwright"), *args]
        if tty:
            master, slave = pty.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
            self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=slave,
                                         stderr=subprocess.PIPE, start_new_session=True)
            os.close(slave)
            self._reader = threading.Thread(target=self._read_pty, args=(master,), daemon=True)
        else:
            self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, start_new_session=True)
            self._reader = threading.Thread(target=self._read_pipe, daemon=True)
        self._reader.start()

    def _read_pty(self, fd: int) -> None:
        try:
            while data := os.read(fd, 65536):
                self.chunks.append(data.decode("utf-8", "replace"))
        except OSError:  # EIO: the child closed the terminal
            pass
        finally:
            os.close(fd)

    def _read_pipe(self) -> None:
        assert self.proc.stdout is not None
        while data := self.proc.stdout.read1(65536):  # type: ignore[attr-defined]
            self.chunks.append(data.decode("utf-8", "replace"))

    @property
    def out(self) -> str:
        return "".join(self.chunks)

    def wait_for(self, text: str, timeout: float = 180) -> None:
        wait_until(lambda: text in self.out or (self.proc.poll() is not None and text in self.out), timeout,
                   what=f"{text!r} in the output of {self.proc.args}")

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            raise AssertionError(f"{self.proc.args} did not end within {timeout}s; output so far:\n{self.out}") \
                from None
        self._reader.join(10)
        err = self.proc.stderr.read().decode() if self.proc.stderr else ""
        return rc, self.out.replace("\r\n", "\n"), err


def plain_checks(out: str) -> list[str]:
    """Output for a pipe: no escape codes, no TTY drawing characters, no carriage returns."""
    assert ESC not in out and "\r" not in out, repr(out[-2000:])
    assert "█" not in out and "░" not in out
    return out.splitlines()


def final_block(lines: list[str]) -> dict[str, str]:
    """The `key: value` lines from `outcome:` to the end."""
    start = max(i for i, line in enumerate(lines) if line.startswith("outcome: "))
    return {k: v for k, _, v in (line.partition(": ") for line in lines[start:])}


def status_json(app: str, env: str, cli_env: dict[str, str]) -> RolloutStatus:
    r = cli("rollout", "status", "--app", app, "--env", env, "-o", "json", env=cli_env)
    assert r.returncode == 0, r.stderr
    return RolloutStatus.model_validate_json(r.stdout)


async def eventually(fn: Any, timeout: float = 180, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        try:
            last = await fn()
            if last:
                return last
        except Exception as e:
            last = e
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# ---- the README's commands ------------------------------------------------------------------------------------


def test_readme_rollwright_commands_are_valid_invocations() -> None:
    """Every `rollwright …` line in the README's operators section parses: options exist, values fit (`--help`
    at the end makes click parse everything, then print help instead of running)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("<!-- section:operators -->"):text.index("<!-- /section:operators -->")]
    cmds = [shlex.split(line, comments=True) for block in re.findall(r"```bash\n(.*?)```", section, re.S)
            for line in block.splitlines() if line.startswith("rollwright ")]
    assert {tuple(c[1:3]) for c in cmds} >= {("rollout", s) for s in (
        "start", "watch", "status", "list", "pause", "resume", "abort", "approve")} and len(cmds) >= 10
    for argv in cmds:
        r = subprocess.run([str(BIN / "rollwright"), *argv[1:], "--help"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0 and r.stdout.startswith("Usage: rollwright"), (argv, r.stderr)


# ---- following: success, rollback ------------------------------------------------------------------------------


@session_loop
async def test_success_followed_plain_and_on_a_tty_then_status_and_history_as_json(
        worker: WorkerProcess, temporal: Client, namespace: str, tmp_path: Path, registry: str,
        cli_env: dict[str, str]) -> None:
    app = uniq("opok")
    target = HealthTarget()
    try:
        p = write_release(tmp_path, app=app, namespace=namespace, registry=registry,
                          objects=[deployment(app, behavior="slow")],
                          health={"progress_deadline_seconds": 180, "bake_seconds": 2,
                                  "http": [{"name": "healthz", "url": target.url, "interval_seconds": 0.5}]})
        plain = Proc("rollout", "start", "-f", str(p), "--wait", env=cli_env)
        plain.wait_for(f"started rollout.{app}.test")
        live = Proc("rollout", "watch", "--app", app, "--env", "test", env=cli_env, tty=True)
        # Pause it from outside, and see both views show the phase; then let it go on.
        r = cli("rollout", "pause", "--app", app, "--env", "test", env=cli_env)
        assert r.returncode == 0 and f"pause sent to rollout.{app}.test" in r.stdout, r
        plain.wait_for("[Paused] ")
        live.wait_for("phase: Paused")
        r = cli("rollout", "resume", "--app", app, "--env", "test", env=cli_env)
        assert r.returncode == 0, r
        rc, out, err = plain.finish()
        trc, tout, terr = live.finish()
    finally:
        target.close()

    assert rc == 0, out + err
    lines = plain_checks(out)
    assert lines[0].startswith(f"started rollout.{app}.test (run ")
    assert any(line.startswith("[Progressing] WaitReady: ") and f"Deployment/{app} " in line for line in lines)
    assert any(line.startswith("[Paused] ") for line in lines)
    assert [line for line in lines if line.startswith("outcome: ")] == ["outcome: Succeeded"]
    final = final_block(lines)
    assert final["image"].startswith(f"{registry}/rollwright-test/{app}@sha256:")
    assert final[f"workload Deployment/{app}"] == "2/2 ready (successfully rolled out)"
    assert final["health healthz"].startswith("ok (") and target.hits > 0
    assert "cause" not in final and err == ""

    # The live view: redrawn in place (cursor up + clear), progress bars, then the same final block.
    assert trc == 0, tout + terr
    assert f"{ESC}[" in tout and "█" in tout and f"{app} → test   phase: Progressing" in tout
    assert "phase: Paused" in tout
    tail = tout[tout.rindex(f"{ESC}[J") + 3:] if f"{ESC}[J" in tout else tout
    assert tail.splitlines()[0] == "outcome: Succeeded" and f"image: {final['image']}" in tail

    st = status_json(app, "test", cli_env)
    assert (st.outcome, st.phase, st.step) == (Outcome.SUCCEEDED, Phase.HEALTHY, Step.DONE)
    assert st.image == final["image"] and st.workloads[0].ready_now and st.health[0].ok
    r = cli("rollout", "status", "--app", app, "--env", "test", env=cli_env)
    assert r.returncode == 0 and f"rollout {app}/test: phase Healthy, step Done" in r.stdout
    r = cli("history", "--app", app, "--env", "test", "--namespace", namespace, "-o", "json", env=cli_env)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [set(row) for row in rows] == [HISTORY_KEYS]
    assert (rows[0]["revision"], rows[0]["status"], rows[0]["image"]) == (1, "deployed", final["image"])
    assert rows[0]["workflow_id"] == f"rollout.{app}.test" and rows[0]["objects"] == [f"Deployment/{namespace}/{app}"]


@session_loop
async def test_rollback_exits_3_with_cause_and_list_finds_runs_by_outcome(
        worker: WorkerProcess, temporal: Client, namespace: str, tmp_path: Path, registry: str,
        apps: k8s.AppsV1Api, cli_env: dict[str, str]) -> None:
    app = uniq("oprb")
    v1 = write_release(tmp_path, app=app, namespace=namespace, registry=registry, version="v1",
                       objects=[deployment(app)])
    r = cli("rollout", "start", "-f", str(v1), "--wait", "-o", "json", env=cli_env)
    assert r.returncode == 0, r.stdout + r.stderr
    res1 = RolloutResult.model_validate_json(r.stdout)  # the whole stdout is the result, nothing else
    assert res1.outcome == Outcome.SUCCEEDED and res1.revision == 1

    v2 = write_release(tmp_path, app=app, namespace=namespace, registry=registry, version="v2",
                       objects=[deployment(app, behavior="not-ready", deadline=10)])
    started = Proc("rollout", "start", "-f", str(v2), "--wait", "-o", "json", env=cli_env)
    await eventually(lambda: _is_running(temporal, f"rollout.{app}.test"), 120, "run 2 to start")
    watch = Proc("rollout", "watch", "--app", app, "--env", "test", env=cli_env)
    wrc, wout, werr = watch.finish()
    rc, out, err = started.finish()

    assert rc == 3, out + err
    res2 = RolloutResult.model_validate_json(out)
    assert res2.outcome == Outcome.ROLLED_BACK and res2.failed_step == Step.WAIT_READY and res2.revision == 2
    assert res2.cause and f"deployment {app}: ProgressDeadlineExceeded" in res2.cause

    assert wrc == 3, wout + werr
    lines = plain_checks(wout)
    assert [line for line in lines if line.startswith("outcome: ")] == ["outcome: RolledBack"]
    final = final_block(lines)
    assert final["cause"] == res2.cause and final["failed step"] == "WaitReady"
    assert any(line.startswith("[Progressing] WaitReady: ") for line in lines)
    # The cluster is back on revision 1.
    assert apps.read_namespaced_deployment(app, namespace).spec.template.spec.containers[0].image == res1.image

    # Visibility: the runs by outcome. The list is eventually consistent, so poll until it settles.
    runs = {}
    for outcome in ("RolledBack", "Succeeded"):
        def listed(outcome: str = outcome) -> list[dict[str, Any]] | None:
            r = cli("rollout", "list", "--app", app, "--outcome", outcome, "-o", "json", env=cli_env)
            assert r.returncode == 0, r.stderr
            rows: list[dict[str, Any]] = json.loads(r.stdout)
            return rows if len(rows) == 1 and rows[0]["status"] != "RUNNING" else None

        rows = wait_until(listed, 60, interval=1, what=f"one {outcome} run of {app}")
        assert set(rows[0]) == LIST_KEYS and rows[0]["app"] == app and rows[0]["outcome"] == outcome
        runs[outcome] = rows[0]
    assert runs["RolledBack"]["status"] == "FAILED" and runs["Succeeded"]["status"] == "COMPLETED"
    assert runs["RolledBack"]["run_id"] != runs["Succeeded"]["run_id"]
    assert runs["RolledBack"]["image"] == res2.image and runs["Succeeded"]["image"] == res1.image
    r = cli("rollout", "list", "--app", app, env=cli_env)
    assert r.returncode == 0 and r.stdout.count(f"rollout.{app}.test") == 2 and "RolledBack" in r.stdout
    r = cli("history", "--app", app, "--env", "test", "-o", "json", env=cli_env)
    assert [(x["revision"], x["status"]) for x in json.loads(r.stdout)] == [(1, "deployed"), (2, "rolled-back")]


async def _is_running(temporal: Client, wid: str) -> bool:
    d = await temporal.get_workflow_handle(wid).describe()
    return d.status == WorkflowExecutionStatus.RUNNING


# ---- errors ------------------------------------------------------------------------------------------------------


def test_errors_are_one_line_with_a_hint_and_debug_shows_the_traceback(stack: None, cli_env: dict[str, str]) -> None:
    def one_error(r: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
        assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
        lines = r.stderr.splitlines()
        assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), r.stderr
        assert "Traceback" not in r.stderr and r.stdout == ""
        for n in needles:
            assert n in r.stderr, r.stderr
        return lines[0]

    unreachable = ("--address", "127.0.0.1:1", "rollout", "status", "--app", "x", "--env", "y")
    line = one_error(cli(*unreachable, env=cli_env), 1, "127.0.0.1:1")
    assert line == "error: cannot connect to Temporal at 127.0.0.1:1: Connection refused"
    one_error(cli("--address", "nonsense", "rollout", "list", env=cli_env), 2, "ROLLWRIGHT_TEMPORAL_ADDRESS",
              "host:port")
    nosuch = uniq("nosuch")
    for args in (("rollout", "status"), ("rollout", "watch"), ("rollout", "pause"),
                 ("rollout", "abort", "--reason", "x"), ("rollout", "approve")):
        one_error(cli(*args, "--app", nosuch, "--env", "test", env=cli_env, timeout=60), 7,
                  f"rollout.{nosuch}.test", "rollwright rollout list")
    one_error(cli("rollout", "start", "-f", "/nonexistent/release.yaml", env=cli_env), 2, "file not found")

    r = cli("--debug", *unreachable, env=cli_env)
    assert r.returncode == 1
    assert "Traceback (most recent call last)" in r.stderr and "Failed client connect" in r.stderr
    assert "error: cannot connect to Temporal at 127.0.0.1:1" in r.stderr


# ---- approval ---------------------------------------------------------------------------------------------------


@session_loop
async def test_approval_accepted_recorded_refused_when_not_waiting_then_abort_exits_5(
        worker: WorkerProcess, temporal: Client, task_queue: str, namespace: str, tmp_path: Path, registry: str,
        apps: k8s.AppsV1Api, cli_env: dict[str, str]) -> None:
    app = uniq("opap")
    p = write_release(tmp_path, app=app, namespace=namespace, registry=registry,
                      objects=[deployment(app, behavior="not-ready", deadline=600)],
                      health={"progress_deadline_seconds": 600}, extra={"approval": {"required": True}})
    r = cli("rollout", "start", "-f", str(p), env=cli_env)
    assert r.returncode == 0, r.stderr
    st = wait_until(lambda: (s := status_json(app, "test", cli_env)).awaiting_approval and s, 120,
                    what="awaiting approval")
    assert st.phase == Phase.AWAITING_APPROVAL and st.revision is None
    assert apps.list_namespaced_deployment(namespace).items == []  # nothing applied before the approval

    r = cli("rollout", "approve", "--app", app, "--env", "test", "--approver", "alice", "--comment", "CHG-42 ok",
            env=cli_env)
    assert r.returncode == 0 and r.stdout.strip() == "approved by alice", r
    st = status_json(app, "test", cli_env)
    assert (st.approved_by, st.approval_comment, st.awaiting_approval) == ("alice", "CHG-42 ok", False)

    # A second approval finds nothing waiting: refused by the update's validator, exit 2, one clear line.
    r = cli("rollout", "approve", "--app", app, "--env", "test", "--comment", "again", env=cli_env)
    assert r.returncode == 2, r
    assert r.stderr.startswith(f"error: rollout rollout.{app}.test is not waiting for approval (phase ")
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
    assert status_json(app, "test", cli_env).approval_comment == "CHG-42 ok"  # unchanged

    wait_until(lambda: status_json(app, "test", cli_env).step == Step.WAIT_READY, 180, what="step WaitReady")
    r = cli("rollout", "abort", "--app", app, "--env", "test", "--reason", "pods never get ready", env=cli_env)
    assert r.returncode == 0 and "pods never get ready" in r.stdout, r
    r = cli("rollout", "watch", "--app", app, "--env", "test", env=cli_env)
    assert r.returncode == 5, r
    final = final_block(plain_checks(r.stdout))
    assert final["outcome"] == "Aborted" and final["cause"] == "aborted by operator: pods never get ready"
    assert final["approved by"] == "alice (CHG-42 ok)"
    res = await RolloutClient(temporal, task_queue).result(temporal.get_workflow_handle(f"rollout.{app}.test"))
    assert (res.outcome, res.approved_by, res.approval_comment) == (Outcome.ABORTED, "alice", "CHG-42 ok")
    # First release of the app: its rollback removed the Deployment it had created.
    wait_until(lambda: apps.list_namespaced_deployment(namespace).items == [], 60, what="Deployment removed")


@session_loop
async def test_approval_timeout_aborts_before_anything_is_applied(
        worker: WorkerProcess, namespace: str, tmp_path: Path, registry: str, apps: k8s.AppsV1Api,
        core: k8s.CoreV1Api, cli_env: dict[str, str]) -> None:
    app = uniq("opto")
    p = write_release(tmp_path, app=app, namespace=namespace, registry=registry, objects=[deployment(app)],
                      extra={"approval": {"required": True, "timeout_seconds": 3}})
    r = cli("rollout", "start", "-f", str(p), "--wait", env=cli_env)
    assert r.returncode == 5, r
    final = final_block(plain_checks(r.stdout))
    assert final["outcome"] == "Aborted"
    assert "approval not given within 3s" in final["cause"]
    assert "approved by" not in final and "image" not in final and "revision" not in final
    st = status_json(app, "test", cli_env)
    assert st.outcome == Outcome.ABORTED and st.revision is None and st.approved_by is None
    # Nothing was applied, built into the namespace or recorded: no Deployment, no revision record.
    assert apps.list_namespaced_deployment(namespace).items == []
    assert core.list_namespaced_secret(namespace, label_selector="rollwright.io/app").items == []
    r = cli("history", "--app", app, "--env", "test", "--namespace", namespace, "-o", "json", env=cli_env)
    assert r.returncode == 0 and json.loads(r.stdout) == []


# ---- worker restart -----------------------------------------------------------------------------------------


@session_loop
async def test_watch_keeps_following_through_a_worker_restart(
        kubeconfig: Path, temporal: Client, namespace: str, tmp_path: Path, registry: str,
        cli_env: dict[str, str]) -> None:
    app = uniq("opwr")
    queue = f"rw-opwr-{uuid.uuid4().hex[:6]}"
    env = dict(cli_env, ROLLWRIGHT_TASK_QUEUE=queue)
    rc = RolloutClient(temporal, queue)
    w1 = WorkerProcess(queue, kubeconfig, name="opwr-1")
    w2 = WorkerProcess(queue, kubeconfig, name="opwr-2")
    w1.start()
    watch: Proc | None = None
    try:
        p = write_release(tmp_path, app=app, namespace=namespace, registry=registry,
                          objects=[deployment(app, replicas=3, behavior="slow")],
                          health={"progress_deadline_seconds": 300})
        r = cli("rollout", "start", "-f", str(p), env=env)
        assert r.returncode == 0, r
        watch = Proc("rollout", "watch", "--app", app, "--env", "test", env=env)

        async def at_wait() -> bool:
            return (await rc.status(app, "test")).step == Step.WAIT_READY

        await eventually(at_wait, 180, "step WaitReady")
        watch.wait_for("WaitReady")
        w1.kill()
        assert watch.proc.poll() is None  # the watcher is still there, with no worker at all
        w2.start()
        wrc, out, err = watch.finish(400)
    finally:
        w1.kill()
        if watch is not None and watch.proc.poll() is None:
            os.killpg(watch.proc.pid, 9)
        w2.stop()
    assert wrc == 0, out + err
    lines = plain_checks(out)
    assert [line for line in lines if line.startswith("outcome: ")] == ["outcome: Succeeded"]
    assert final_block(lines)[f"workload Deployment/{app}"] == "3/3 ready (successfully rolled out)"
    # The kill really hit the wait: it was retried on the second worker.
    counts = activity_counts(history_events(f"rollout.{app}.test", env=cli_env))
    assert counts["wait_ready"]["completed"] == 1 and counts["wait_ready"]["max_attempt"] >= 2
