"""``build_image`` and ``push_image``: the Docker engine side of a rollout, through the Docker SDK.

Called by ``RolloutWorkflow`` (steps Build and Push). Both are idempotent on the source tag: a tag the registry
already has is a cache hit (no build, no push), and a push of an image the registry has returns its digest.
The build log is streamed to the activity log line by line, each line a heartbeat, so a hung build is noticed.
"""

from __future__ import annotations

import docker.errors
import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import cancellation
from activities.bundles import context_fileobj, local_spec
from activities.cancellation import sync_activity
from activities.clients import Clients
from activities.registry import manifest_digest
from activities.source import context_dir
from contract.models import BuildInput, BuildResult, PushInput, PushResult
from contract.spec import ReleaseSpec

log = activity.logger


class BuildActivities:
    def __init__(self, clients: Clients) -> None:
        self.c = clients

    def _remote_digest(self, spec: ReleaseSpec, tag: str) -> str | None:
        assert spec.image is not None
        registry, path = spec.image.repository.split("/", 1)
        try:
            with self.c.http(timeout=10) as h:
                return manifest_digest(h, self.c.registry_url(registry), path, tag, registry)
        except httpx.HTTPError as e:
            raise ApplicationError(f"registry {registry}: {e}", type="RegistryError") from None

    @sync_activity("build_image")
    def build_image(self, inp: BuildInput) -> BuildResult:
        spec, img = inp.spec, inp.spec.image
        assert img is not None
        ref = f"{img.repository}:{inp.tag}"
        if self._remote_digest(spec, inp.tag):
            log.info("cache hit: %s already in the registry, not rebuilding", ref)
            return BuildResult(image=ref, cache_hit=True)
        return BuildResult(image=ref, image_id=self._build(spec, inp.tag))

    def _build(self, spec: ReleaseSpec, tag: str) -> str:
        img = spec.image
        assert img is not None
        ref = f"{img.repository}:{tag}"
        local_spec(spec)  # refuses a path release on a worker that does not allow them
        ctx = context_fileobj(spec)  # a bundle's context blob goes to the engine as it is, never extracted
        log.info("building %s from %s", ref, spec.bundle or context_dir(spec))
        where = {"fileobj": ctx, "custom_context": True, "encoding": "gzip"} if ctx else {"path": str(context_dir(spec))}
        image_id = None
        try:
            for chunk in self.c.docker.api.build(**where, dockerfile=img.dockerfile, tag=ref,
                                                 buildargs=img.build_args or None, target=img.target, rm=True,
                                                 forcerm=True, decode=True):
                if "error" in chunk:
                    raise ApplicationError(f"docker build {ref} failed: {chunk['error'].strip()}",
                                           type="BuildFailed", non_retryable=True)
                line = (chunk.get("stream") or "").rstrip()
                if line:
                    log.info("build | %s", line)
                    cancellation.heartbeat(line[:200])
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
        except docker.errors.APIError as e:
            # 4xx from the engine is a bad Dockerfile/context (retrying won't help); 5xx may be transient.
            if e.status_code and 400 <= e.status_code < 500:
                raise ApplicationError(f"docker build {ref}: {e.explanation}", type="BuildFailed",
                                       non_retryable=True) from None
            raise
        finally:
            if ctx:
                ctx.close()
        return image_id or self.c.docker.images.get(ref).id

    @sync_activity("push_image")
    def push_image(self, inp: PushInput) -> PushResult:
        spec, img = inp.spec, inp.spec.image
        assert img is not None
        existing = self._remote_digest(spec, inp.tag)
        if existing:
            return PushResult(image=f"{img.repository}@{existing}", digest=existing, already_present=True)
        try:
            self.c.docker.images.get(f"{img.repository}:{inp.tag}")
        except docker.errors.ImageNotFound:
            # A retry on another worker (or after an engine prune): the build is deterministic, redo it.
            self._build(spec, inp.tag)
        digest = None
        for chunk in self.c.docker.api.push(img.repository, tag=inp.tag, stream=True, decode=True):
            if "error" in chunk:
                raise ApplicationError(f"docker push {img.repository}:{inp.tag}: {chunk['error']}", type="PushFailed")
            if chunk.get("aux", {}).get("Digest"):
                digest = chunk["aux"]["Digest"]
            cancellation.heartbeat(chunk.get("status", ""))
        served = self._remote_digest(spec, inp.tag)
        if not served or (digest and served != digest):
            raise ApplicationError(f"registry serves {served} for {img.repository}:{inp.tag}, push reported {digest}",
                                   type="PushFailed")
        log.info("pushed %s@%s", img.repository, served)
        return PushResult(image=f"{img.repository}@{served}", digest=served)
