"""Worker and client configuration, read from ``ROLLWRIGHT_*`` environment variables.

Called by ``orchestrator.cli`` (every command) and ``orchestrator.worker``. Validation happens here, once, so a
bad value stops the process at start with a message that names the variable instead of failing later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator import DEFAULT_TASK_QUEUE
from orchestrator.codec import CodecError, KeyRing
from releases import mirrors


class ConfigError(Exception):
    """A configuration value is invalid; the message names the environment variable."""


class Settings(BaseSettings):
    """Everything the worker and the CLI need to reach Temporal and expose health/metrics."""

    model_config = SettingsConfigDict(env_prefix="ROLLWRIGHT_", extra="ignore")

    temporal_address: str = Field("127.0.0.1:7233", description="host:port of the Temporal frontend")
    temporal_namespace: str = Field("default", min_length=1)
    task_queue: str = Field(DEFAULT_TASK_QUEUE, min_length=1)
    temporal_tls_cert: Path | None = Field(None, description="client certificate (mTLS)")
    temporal_tls_key: Path | None = Field(None, description="client key (mTLS)")
    temporal_tls_ca: Path | None = Field(None, description="CA bundle for the server certificate")
    temporal_tls_server_name: str | None = Field(None, description="name to verify in the server certificate")
    temporal_api_key: str | None = Field(None, repr=False, description="API key (Temporal Cloud); never logged")
    http_host: str = Field("0.0.0.0", description="bind address of /healthz, /readyz, /metrics")
    http_port: int = Field(9090, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    # The SDK's Rust core (polls, task dispatch, sticky cache) logs at this level into the worker's log (logger
    # ``temporalio.core``). DEBUG shows every poll answer and completion: how lost workflow tasks were traced (issue 13).
    core_log_level: Literal["TRACE", "DEBUG", "INFO", "WARN", "ERROR"] = "WARN"
    shutdown_timeout_seconds: float = Field(30.0, ge=0, le=3600)
    # Threads of the main queue's steps (I/O-bound API calls). Above the fleet's concurrent steps, so the server can
    # hand a step straight back to the worker that scheduled it (eager dispatch needs a free slot); with 20, a
    # 60-rollout fleet fell back to the task queue, 0.1-3 s per step (issue 13).
    max_concurrent_activities: int = Field(64, ge=1, le=1000)
    # Readiness waits run on their own queue (<task_queue>-waits) as async activities over the shared watch
    # cache: a wait costs a coroutine, not a thread, so this bound is about memory, not threads.
    max_concurrent_waits: int = Field(2000, ge=1, le=100000)
    # Long polls held open per queue. With the SDK default (5 workflow-task polls, 4 of them on the worker's sticky
    # queue) the workflow tasks of a fleet queued for free polls: at 60 rollouts 20 of a rollout's 30 s were spent
    # there, 8-10 s with 20 polls (issue 13). A poll is one idle gRPC call. Activity polls stay at the default: each
    # holds an activity slot.
    workflow_task_pollers: int = Field(20, ge=2, le=200)
    # Workflow tasks held at once. A task holds its slot while its short steps run as local activities, and a
    # poller needs a free slot to poll; with the SDK's 100, a 200-rollout fleet filled every slot with tasks
    # waiting on apply, nobody polled the sticky queue, and tasks timed out there after 10 s (issue 13). A slot
    # is a coroutine of workflow code, not a thread: the local-activity slots bound the cluster calls. At most the
    # SDK's workflow cache (1000 runs), which the SDK requires.
    max_concurrent_workflow_tasks: int = Field(1000, ge=2, le=1000)
    activity_task_pollers: int = Field(5, ge=1, le=200)
    # Waits are never dispatched eagerly (their own queue), so these polls bound how fast waits start: with 5, a
    # 200-rollout fleet's waits queued 16 s for a poll (issue 13). Waits have 2000 slots, so polls cost no slot.
    wait_task_pollers: int = Field(40, ge=1, le=500)
    kubeconfig: Path | None = Field(None, description="kubeconfig for activities; in-cluster config when unset")
    # Worker Versioning (README "Upgrading the worker itself"). Both set: the worker polls as version
    # <deployment>/<build id> of a Temporal Worker Deployment, and gets work only once that version is current
    # (or for rollouts pinned to it). Both unset (default): an unversioned worker, as on a developer's host.
    worker_deployment_name: str | None = Field(None, pattern=r"^[A-Za-z0-9]([-_A-Za-z0-9]*[A-Za-z0-9])?$",
                                               max_length=100, description="Temporal Worker Deployment name")
    worker_build_id: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40,
                                        description="this build's ID (the manifests set it per build)")
    registry_mirrors: str | None = Field(None, description="registry=endpoint,… where registry requests go "
                                         "(releases.mirrors); names and digests stay the identity")
    prometheus_url: str | None = Field(None, pattern=r"^https?://",
                                       description="Prometheus of analysis metrics without provider.prometheus.address")
    # Payload encryption (orchestrator.codec). Keys are secrets: never logged, never in the repo.
    codec_keys: str | None = Field(None, repr=False, description="id=base64key[,id=base64key...]")
    codec_keys_file: Path | None = Field(None, description="file of id=base64key lines, or a mounted Secret dir")
    codec_key_id: str | None = Field(None, description="ID of the key that encrypts; the others only decrypt")

    @field_validator("temporal_address")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError("must be host:port")
        return v

    @field_validator("temporal_tls_cert", "temporal_tls_key", "temporal_tls_ca", "temporal_tls_server_name",
                     "codec_keys", "codec_keys_file", "codec_key_id", "worker_deployment_name", "worker_build_id",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        # docker compose passes `${VAR:-}` as an empty string; Path("") would silently mean the current directory.
        return None if v == "" else v

    @field_validator("registry_mirrors")
    @classmethod
    def _mirrors(cls, v: str | None) -> str | None:
        mirrors.parse(v)  # ValueError → "ROLLWRIGHT_REGISTRY_MIRRORS: Value error, entry … must be …"
        return v

    @field_validator("log_level", "core_log_level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ValueError("ROLLWRIGHT_TEMPORAL_TLS_CERT and ROLLWRIGHT_TEMPORAL_TLS_KEY must be set together")
        for name in ("temporal_tls_cert", "temporal_tls_key", "temporal_tls_ca"):
            p = getattr(self, name)
            if p is not None and not p.is_file():
                raise ValueError(f"ROLLWRIGHT_{name.upper()}: file not found: {p}")
        if (self.worker_deployment_name is None) != (self.worker_build_id is None):
            raise ValueError("ROLLWRIGHT_WORKER_DEPLOYMENT_NAME and ROLLWRIGHT_WORKER_BUILD_ID must be set together "
                             "(both: a versioned worker; neither: unversioned)")
        self.key_ring()  # validates the codec keys now, at start, not at the first payload
        return self

    @property
    def versioned(self) -> bool:
        return self.worker_build_id is not None

    def key_ring(self) -> KeyRing | None:
        """The payload-encryption keys, or None when encryption is off."""
        try:
            return KeyRing.from_sources(self.codec_keys, self.codec_keys_file, self.codec_key_id)
        except CodecError as e:
            raise ValueError(str(e)) from None


def load_settings(**overrides: object) -> Settings:
    """Reads the environment (plus explicit overrides from CLI flags) and validates it.

    Raises:
        ConfigError: naming the offending ``ROLLWRIGHT_*`` variable and the reason.
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = err["loc"]
            var = f"ROLLWRIGHT_{str(loc[0]).upper()}" if loc else "configuration"
            lines.append(f"{var}: {err['msg']} (got {err.get('input')!r})" if loc else err["msg"])
        raise ConfigError("; ".join(lines)) from None
