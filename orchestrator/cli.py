"""``rollwright``: the command line. Thin: parses flags, calls ``orchestrator.client``, prints, sets exit codes.

Entry point of the console script (pyproject ``[project.scripts]``). Errors are one line plus a hint, never a
traceback unless ``--debug``. Exit codes (stable, for CI scripts):

    0 succeeded · 1 unexpected error · 2 invalid input · 3 rolled back · 4 failed · 5 aborted · 6 already running
    7 not found
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from contract.models import Outcome, RolloutResult, Step
from orchestrator import __version__, workflow_id
from orchestrator.config import ConfigError, Settings, load_settings
from releases.loader import ReleaseError, load_spec

EXIT_OK, EXIT_ERROR, EXIT_INVALID, EXIT_ROLLED_BACK, EXIT_FAILED, EXIT_ABORTED, EXIT_RUNNING, EXIT_NOT_FOUND = range(8)
OUTCOME_EXIT = {Outcome.SUCCEEDED: EXIT_OK, Outcome.ROLLED_BACK: EXIT_ROLLED_BACK, Outcome.FAILED: EXIT_FAILED,
                Outcome.ABORTED: EXIT_ABORTED}
T = TypeVar("T")


class Ctx:
    def __init__(self, debug: bool, overrides: dict[str, Any]) -> None:
        self.debug, self.overrides = debug, overrides

    def settings(self) -> Settings:
        return load_settings(**self.overrides)


def _exit(code: int) -> None:
    """Exits without interpreter finalization: the Temporal SDK's native threads can abort a normal exit
    (sdk-python#300, exit code 134 seen here), which would turn a clean rollout result into a crash."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _fail(msg: str, hint: str | None, code: int) -> None:
    click.echo(f"error: {msg}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    _exit(code)


def run(ctx: click.Context, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Runs a coroutine, turning known errors into one line + hint + exit code."""
    from orchestrator.client import RolloutAlreadyRunning, RolloutNotFound

    c: Ctx = ctx.obj
    try:
        return asyncio.run(fn())
    except SystemExit:
        raise
    except ConfigError as e:
        _fail(str(e), "check the ROLLWRIGHT_* environment variables or flags", EXIT_INVALID)
    except ReleaseError as e:
        _fail(str(e), "fix the release spec or manifest; nothing was built, pushed or applied", EXIT_INVALID)
    except RolloutAlreadyRunning as e:
        _fail(str(e), None, EXIT_RUNNING)
    except RolloutNotFound as e:
        _fail(str(e), "list rollouts with `rollwright rollout list`", EXIT_NOT_FOUND)
    except Exception as e:
        if c.debug:
            traceback.print_exc()
        msg = str(e) or type(e).__name__
        address = c.overrides.get("temporal_address") or os.environ.get("ROLLWRIGHT_TEMPORAL_ADDRESS", "127.0.0.1:7233")
        if msg.startswith("Failed client connect"):  # the SDK's message carries a Rust error chain: explain it
            from orchestrator.connect import explain_connect_error

            try:
                settings: Settings | None = c.settings()
            except ConfigError:
                settings = None
            reason, why = explain_connect_error(msg, settings)
            _fail(f"cannot connect to Temporal at {address}: {reason}", why, EXIT_ERROR)
        hint = None
        if "connect" in msg.lower() or "transport" in msg.lower():
            hint = f"is Temporal reachable at {address}?"
        _fail(f"{type(e).__name__}: {msg}", hint or (None if c.debug else "run again with --debug for details"),
              EXIT_ERROR)
    raise AssertionError("unreachable")


def emit(data: Any, output: str, text: Callable[[], None]) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        text()


INVALID_INPUT_ERRORS = {"InvalidRelease", "InvalidManifest"}


def result_exit(res: RolloutResult) -> int:
    """Exit 2 only for input the release got wrong; a cluster or registry that failed validation is exit 4.
    Results of workers before 0.2 carry no error type: a failed Validate step then counts as invalid input."""
    if res.outcome == Outcome.FAILED and res.failed_step == Step.VALIDATE and (
            res.error_type is None or res.error_type in INVALID_INPUT_ERRORS):
        return EXIT_INVALID
    return OUTCOME_EXIT[res.outcome]


output_opt = click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
app_opts = [click.option("--app", required=True), click.option("--env", "environment", required=True)]


def with_app(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(app_opts):
        f = opt(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rollwright")
@click.option("--address", "temporal_address", envvar="ROLLWRIGHT_TEMPORAL_ADDRESS", help="Temporal host:port")
@click.option("--namespace", "temporal_namespace", envvar="ROLLWRIGHT_TEMPORAL_NAMESPACE", help="Temporal namespace")
@click.option("--task-queue", envvar="ROLLWRIGHT_TASK_QUEUE", help="task queue (default rollwright)")
@click.option("--debug", is_flag=True, help="show tracebacks")
@click.pass_context
def main(ctx: click.Context, temporal_address: str | None, temporal_namespace: str | None, task_queue: str | None,
         debug: bool) -> None:
    """Durable Kubernetes rollouts on Temporal."""
    ctx.obj = Ctx(debug, {"temporal_address": temporal_address, "temporal_namespace": temporal_namespace,
                          "task_queue": task_queue})


@main.group(invoke_without_command=True)
@click.option("--http-port", type=int, help="port of /healthz, /readyz, /metrics")
@click.pass_context
def worker(ctx: click.Context, http_port: int | None) -> None:
    """Run a worker (SIGTERM: stop polling, finish running activities, exit); `worker upgrade`: roll out a new
    worker build under Worker Versioning."""
    if ctx.invoked_subcommand is not None:
        return
    from orchestrator import logs
    from orchestrator import worker as worker_mod

    c: Ctx = ctx.obj
    try:
        settings = load_settings(**c.overrides, http_port=http_port)
    except ConfigError as e:
        _fail(str(e), "check the ROLLWRIGHT_* environment variables or flags", EXIT_INVALID)
        return
    logs.setup(settings.log_level, settings.log_format)
    run(ctx, lambda: worker_mod.run(settings))
    _exit(EXIT_OK)


@worker.command("upgrade")
@click.option("-f", "--file", "path", required=True, type=click.Path(dir_okay=False),
              help="the worker's release spec, e.g. k8s/rollwright.release.yaml")
@click.option("--build-id", required=True, help="the new build's ID (DNS label; also its image tag)")
@click.option("--deployment-name", envvar="ROLLWRIGHT_WORKER_DEPLOYMENT_NAME", default="rollwright-worker",
              show_default=True, help="Temporal Worker Deployment name")
@click.option("--workload", default="rollwright-worker", show_default=True,
              help="the worker's Deployment in the release's manifests")
@click.option("--pollers-timeout", type=int, default=600, show_default=True,
              help="seconds for the new build to poll after its rollout")
@click.option("--drain-timeout", type=int, default=7 * 86400, show_default=True,
              help="seconds to wait for the previous build's pinned rollouts to finish")
@click.option("--keep-previous", is_flag=True, help="do not delete the previous build's Deployment once drained")
@click.option("--wait", is_flag=True, help="follow until the upgrade ends")
@output_opt
@click.pass_context
def worker_upgrade(ctx: click.Context, path: str, build_id: str, deployment_name: str, workload: str,
                   pollers_timeout: int, drain_timeout: int, keep_previous: bool, wait: bool, output: str) -> None:
    """Roll out worker build BUILD_ID next to the running one, make it current once it polls, retire the old one
    once drained (WorkerUpgradeWorkflow)."""
    from temporalio.client import WorkflowFailureError

    from orchestrator.client import push_bundle, validate_locally
    from orchestrator.connect import connect
    from orchestrator.upgrade import UpgradeAlreadyRunning, render_build, start_upgrade, upgrade_input

    async def go() -> int:
        settings = ctx.obj.settings()
        spec = load_spec(path, initiator=os.environ.get("USER", "unknown"))
        # Input checks first (build ID, deployment name, the worker Deployment in the manifests): exit 2, nothing
        # pushed. render_build writes the build's manifests to a temporary directory.
        upgrade_input(spec, build_id=build_id, deployment_name=deployment_name, task_queue=settings.task_queue)
        spec = render_build(spec, build_id=build_id, deployment_name=deployment_name, workload=workload)
        validate_locally(spec)
        spec = await asyncio.to_thread(push_bundle, spec)
        inp = upgrade_input(spec, build_id=build_id, deployment_name=deployment_name, task_queue=settings.task_queue,
                            pollers_timeout_seconds=pollers_timeout, drain_timeout_seconds=drain_timeout,
                            retire_previous=not keep_previous)
        client = await connect(settings, tracing=False)
        try:
            handle = await start_upgrade(client, inp, settings.task_queue)
        except UpgradeAlreadyRunning as e:
            _fail(str(e), None, EXIT_RUNNING)
            return EXIT_RUNNING
        if output == "text":
            click.echo(f"started {handle.id} (run {handle.result_run_id}): {deployment_name} → build {build_id}")
        if not wait:
            emit({"workflow_id": handle.id, "run_id": handle.result_run_id}, output, lambda: None)
            return EXIT_OK
        try:
            res = await handle.result()
        except WorkflowFailureError as e:
            msg = getattr(e.cause, "message", None) or str(e.cause or e)
            emit({"workflow_id": handle.id, "error": msg}, output, lambda: click.echo(f"upgrade failed: {msg}"))
            return EXIT_FAILED
        data = res if isinstance(res, dict) else {}
        emit(data, output, lambda: click.echo(
            f"worker {deployment_name}: current version {build_id} (was {data.get('previous_build_id') or 'unversioned'})"
            + (f"; {data.get('previous_build_id')} {data.get('drained')}" if data.get("drained") else "")
            + (f"; deleted {', '.join(data.get('deleted') or [])}" if data.get("deleted") else "")))
        return EXIT_OK

    _exit(run(ctx, go))


@main.command()
@click.pass_context
def setup(ctx: click.Context) -> None:
    """Register Rollwright's search attributes on an existing Temporal server."""
    from orchestrator.setup import register_search_attributes

    async def go() -> None:
        added = await register_search_attributes(ctx.obj.settings())
        click.echo("registered: " + (", ".join(added) if added else "nothing to do, all present"))

    run(ctx, go)
    _exit(EXIT_OK)


@main.command("codec-server")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="ROLLWRIGHT_CODEC_HOST")
@click.option("--port", default=8899, show_default=True, type=click.IntRange(0, 65535), envvar="ROLLWRIGHT_CODEC_PORT")
@click.option("--cors-origin", "cors_origins", multiple=True, envvar="ROLLWRIGHT_CODEC_CORS_ORIGINS",
              help="origin of a Web UI allowed to call it, e.g. http://127.0.0.1:8233 (repeatable; env: comma list)")
@click.pass_context
def codec_server(ctx: click.Context, host: str, port: int, cors_origins: tuple[str, ...]) -> None:
    """Serve /encode and /decode for the Web UI and `temporal --codec-endpoint` (needs ROLLWRIGHT_CODEC_KEYS*).

    ROLLWRIGHT_CODEC_AUTH_TOKEN, when set, is required as `Authorization: Bearer <token>`."""
    from orchestrator import logs
    from orchestrator.codec import EncryptionCodec
    from orchestrator.codec_server import serve

    c: Ctx = ctx.obj
    try:
        settings = load_settings(**c.overrides)
    except ConfigError as e:
        _fail(str(e), "check the ROLLWRIGHT_CODEC_* environment variables", EXIT_INVALID)
        return
    ring = settings.key_ring()
    if ring is None:
        _fail("no codec keys configured", "set ROLLWRIGHT_CODEC_KEYS or ROLLWRIGHT_CODEC_KEYS_FILE", EXIT_INVALID)
        return
    origins = [o.strip() for item in cors_origins for o in item.split(",") if o.strip()]
    logs.setup(settings.log_level, settings.log_format)
    serve(EncryptionCodec(ring), host, port, cors_origins=origins,
          auth_token=os.environ.get("ROLLWRIGHT_CODEC_AUTH_TOKEN") or None)
    _exit(EXIT_OK)


@main.group()
def bundle() -> None:
    """Release bundles: a release's spec, manifests and build context as an OCI artifact."""


@bundle.command("push")
@click.option("-f", "--file", "path", required=True, type=click.Path(dir_okay=False), help="release spec (YAML/JSON)")
@click.option("--repository", envvar="ROLLWRIGHT_BUNDLE_REPOSITORY",
              help="registry/repo (default <image registry>/rollwright-bundles/<app>)")
@output_opt
@click.pass_context
def bundle_push(ctx: click.Context, path: str, repository: str | None, output: str) -> None:
    """Pack and push the release in FILE; prints the workflow input (spec + bundle reference)."""
    from orchestrator.client import push_bundle, validate_locally

    async def go() -> None:
        spec = load_spec(path)
        validate_locally(spec)
        pushed = await asyncio.to_thread(push_bundle, spec, repository)
        data = pushed.model_dump(mode="json", exclude_defaults=True, exclude={"base_dir"})
        emit({"bundle": pushed.bundle, "input": data}, output,
             lambda: click.echo(f"{pushed.bundle}\ninput: {json.dumps(data, separators=(',', ':'))}"))

    run(ctx, go)


@bundle.command("inspect")
@click.argument("reference")
@output_opt
@click.pass_context
def bundle_inspect(ctx: click.Context, reference: str, output: str) -> None:
    """Show a bundle's manifest, spec and files; fetched by digest and verified."""
    from releases import bundle as b

    async def go() -> None:
        try:
            info = await asyncio.to_thread(b.inspect, reference)
        except b.BundleError as e:
            _fail(str(e), None, EXIT_NOT_FOUND if "not found" in str(e) else EXIT_INVALID)
            return

        def text() -> None:
            click.echo(f"bundle {reference}")
            click.echo(f"spec: {json.dumps(info['config']['spec'], separators=(',', ':'))}")
            for mt, files in info["files"].items():
                click.echo(f"{mt}: {len(files)} files")
                for f in files:
                    click.echo(f"  {f}")

        emit(info, output, text)

    run(ctx, go)


@main.group()
def rollout() -> None:
    """Start, follow and steer rollouts."""


@rollout.command("start")
@click.option("-f", "--file", "paths", required=True, multiple=True, type=click.Path(dir_okay=False),
              help="release spec (YAML/JSON); repeat it to start a fleet")
@click.option("--wait", is_flag=True, help="follow until the rollout ends; exit code reflects the outcome")
@click.option("--initiator", default=lambda: os.environ.get("USER", "unknown"), help="recorded as who started it")
@output_opt
@click.pass_context
def rollout_start(ctx: click.Context, paths: tuple[str, ...], wait: bool, initiator: str, output: str) -> None:
    """Start a rollout of the release in FILE, or one per FILE (a fleet).

    A fleet is checked whole first: one bad release or two releases of the same app and environment, and nothing
    is pushed or started (exit 2). Then every release starts on its own; with --wait the exit code is the worst
    outcome."""
    from orchestrator.client import RolloutClient
    from orchestrator.watch import follow

    async def go() -> int:
        specs = [load_spec(p, initiator=initiator) for p in paths]
        rc = await RolloutClient.connect(ctx.obj.settings())
        if len(specs) > 1:
            return await _start_fleet(rc, specs, paths, wait, output)
        spec = specs[0]
        handle = await rc.start(spec)
        if output == "text":
            click.echo(f"started {handle.id} (run {handle.result_run_id})")
        if not wait:
            if output == "json":
                emit({"workflow_id": handle.id, "run_id": handle.result_run_id}, output, lambda: None)
            return EXIT_OK
        res = await follow(rc, spec.app, spec.environment, output=output)
        return result_exit(res)

    _exit(run(ctx, go))


async def _start_fleet(rc: Any, specs: list[Any], paths: tuple[str, ...], wait: bool, output: str) -> int:
    """``rollout start -f A -f B …``: one line per release as it starts and, with --wait, as it ends."""
    from orchestrator.client import RolloutAlreadyRunning, Started

    started: list[Started] = await rc.start_many(specs, paths)
    rows: list[dict[str, Any]] = []
    code = EXIT_OK
    for path, st in zip(paths, started, strict=True):
        if st.handle is not None:
            rows.append({"file": path, "workflow_id": st.handle.id, "run_id": st.handle.result_run_id})
            if output == "text":
                click.echo(f"started {st.handle.id} (run {st.handle.result_run_id}) from {path}")
        else:
            rows.append({"file": path, "error": str(st.error)})
            if output == "text":
                click.echo(f"not started {path}: {st.error}", err=True)
            err = EXIT_RUNNING if isinstance(st.error, RolloutAlreadyRunning) else EXIT_INVALID
            code = max(code, err)
    if wait:
        async def one(row: dict[str, Any], st: Started) -> int:
            assert st.handle is not None
            res = await rc.result(st.handle)
            row.update(outcome=res.outcome.value, cause=res.cause)
            if output == "text":
                click.echo(f"{res.outcome.value:<10} {st.handle.id}" + (f": {res.cause}" if res.cause else ""))
            return result_exit(res)

        done = await asyncio.gather(*(one(r, st) for r, st in zip(rows, started, strict=True) if st.handle))
        code = max([code, *done])
    emit(rows, output, lambda: None)
    return code


@rollout.command("watch")
@with_app
@output_opt
@click.pass_context
def rollout_watch(ctx: click.Context, app: str, environment: str, output: str) -> None:
    """Follow a rollout live until it ends; exit code reflects the outcome."""
    from orchestrator.client import RolloutClient
    from orchestrator.watch import follow

    async def go() -> int:
        rc = await RolloutClient.connect(ctx.obj.settings())
        return result_exit(await follow(rc, app, environment, output=output))

    _exit(run(ctx, go))


@rollout.command("status")
@with_app
@output_opt
@click.pass_context
def rollout_status(ctx: click.Context, app: str, environment: str, output: str) -> None:
    """Show phase, step, workloads and health of the current (or last) rollout."""
    from orchestrator.client import RolloutClient
    from orchestrator.watch import render_status_text

    async def go() -> None:
        rc = await RolloutClient.connect(ctx.obj.settings())
        st = await rc.status(app, environment)
        emit(st.model_dump(mode="json"), output, lambda: click.echo(render_status_text(st)))

    run(ctx, go)
    _exit(EXIT_OK)


def _signal_cmd(name: str, doc: str) -> None:
    @rollout.command(name, help=doc)
    @with_app
    @click.pass_context
    def cmd(ctx: click.Context, app: str, environment: str) -> None:
        from orchestrator.client import RolloutClient

        async def go() -> None:
            rc = await RolloutClient.connect(ctx.obj.settings())
            await getattr(rc, name)(app, environment)
            click.echo(f"{name} sent to {workflow_id(app, environment)}")

        run(ctx, go)
        _exit(EXIT_OK)


_signal_cmd("pause", "Hold the rollout before its next step.")
_signal_cmd("resume", "Continue a paused rollout.")


@rollout.command("abort")
@with_app
@click.option("--reason", required=True, help="recorded in the result and the revision history")
@click.pass_context
def rollout_abort(ctx: click.Context, app: str, environment: str, reason: str) -> None:
    """Abort the rollout (at any phase) and roll back what it changed."""
    from orchestrator.client import RolloutClient

    async def go() -> None:
        rc = await RolloutClient.connect(ctx.obj.settings())
        await rc.abort(app, environment, reason)
        click.echo(f"abort sent to {workflow_id(app, environment)}: {reason}")

    run(ctx, go)
    _exit(EXIT_OK)


@rollout.command("approve")
@with_app
@click.option("--comment")
@click.option("--approver", default=lambda: os.environ.get("USER", "unknown"))
@click.pass_context
def rollout_approve(ctx: click.Context, app: str, environment: str, comment: str | None, approver: str) -> None:
    """Approve a rollout waiting at its approval gate."""
    from temporalio.client import WorkflowUpdateFailedError

    from orchestrator.client import RolloutClient

    async def go() -> None:
        rc = await RolloutClient.connect(ctx.obj.settings())
        try:
            click.echo(await rc.approve(app, environment, approver, comment))
        except WorkflowUpdateFailedError as e:
            _fail(str(e.cause.message if e.cause and hasattr(e.cause, "message") else e), None, EXIT_INVALID)

    run(ctx, go)
    _exit(EXIT_OK)


@rollout.command("promote")
@with_app
@click.option("--full", is_flag=True, help="skip every remaining step and analysis")
@click.option("--comment")
@click.option("--approver", default=lambda: os.environ.get("USER", "unknown"))
@click.pass_context
def rollout_promote(ctx: click.Context, app: str, environment: str, full: bool, comment: str | None,
                    approver: str) -> None:
    """Continue a canary / blue-green rollout paused at a step or on an inconclusive analysis."""
    from temporalio.client import WorkflowUpdateFailedError

    from orchestrator.client import RolloutClient

    async def go() -> None:
        rc = await RolloutClient.connect(ctx.obj.settings())
        try:
            click.echo(await rc.promote(app, environment, approver, full=full, comment=comment))
        except WorkflowUpdateFailedError as e:
            _fail(str(e.cause.message if e.cause and hasattr(e.cause, "message") else e), None, EXIT_INVALID)

    run(ctx, go)
    _exit(EXIT_OK)


@rollout.command("list")
@click.option("--app")
@click.option("--env", "environment")
@click.option("--outcome", type=click.Choice([o.value for o in Outcome]))
@click.option("--limit", default=50, show_default=True)
@output_opt
@click.pass_context
def rollout_list(ctx: click.Context, app: str | None, environment: str | None, outcome: str | None, limit: int,
                 output: str) -> None:
    """List rollouts (Temporal visibility query)."""
    from dataclasses import asdict

    from orchestrator.client import RolloutClient

    async def go() -> None:
        rc = await RolloutClient.connect(ctx.obj.settings())
        rows = await rc.list(app=app, environment=environment, outcome=outcome, limit=limit)

        def text() -> None:
            click.echo(f"{'WORKFLOW ID':40} {'STATUS':11} {'PHASE':17} {'OUTCOME':11} STARTED")
            for r in rows:
                click.echo(f"{r.workflow_id:40} {r.status:11} {r.phase or '-':17} {r.outcome or '-':11} {r.start_time}")

        emit([asdict(r) for r in rows], output, text)

    run(ctx, go)
    _exit(EXIT_OK)


@main.command()
@with_app
@click.option("--namespace", "k8s_namespace", help="target namespace (default: search all)")
@click.option("--kubeconfig", envvar="ROLLWRIGHT_KUBECONFIG")
@output_opt
@click.pass_context
def history(ctx: click.Context, app: str, environment: str, k8s_namespace: str | None, kubeconfig: str | None,
            output: str) -> None:
    """List the recorded revisions of an app in an environment."""
    from orchestrator.revisions_view import list_history

    async def go() -> None:
        rows = list_history(app, environment, k8s_namespace, kubeconfig)

        def text() -> None:
            click.echo(f"{'REVISION':>8}  {'STATUS':12} {'UPDATED':26} {'IMAGE':60} CAUSE")
            for r in rows:
                click.echo(f"{r['revision']:>8}  {r['status']:12} {r['updated_at'] or r['created_at'] or '':26} "
                           f"{(r['image'] or '-'):60} {r['cause'] or ''}")

        emit(rows, output, text)

    run(ctx, go)
    _exit(EXIT_OK)


@main.command()
@with_app
@click.option("--to-revision", type=int, help="default: the revision deployed before the current one")
@click.option("--namespace", "k8s_namespace")
@click.option("--kubeconfig", envvar="ROLLWRIGHT_KUBECONFIG")
@click.option("--wait", is_flag=True)
@output_opt
@click.pass_context
def rollback(ctx: click.Context, app: str, environment: str, to_revision: int | None, k8s_namespace: str | None,
             kubeconfig: str | None, wait: bool, output: str) -> None:
    """Roll out a recorded revision again (itself a rollout workflow)."""
    from orchestrator.client import RolloutClient
    from orchestrator.revisions_view import rollback_spec
    from orchestrator.watch import follow

    async def go() -> int:
        spec = rollback_spec(app, environment, to_revision, k8s_namespace, kubeconfig)
        rc = await RolloutClient.connect(ctx.obj.settings())
        handle = await rc.start(spec)
        if output == "text":
            click.echo(f"started {handle.id}: rollback to revision {spec.from_revision}")
        if not wait:
            return EXIT_OK
        return result_exit(await follow(rc, app, environment, output=output))

    _exit(run(ctx, go))


if __name__ == "__main__":
    main()
