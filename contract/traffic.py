"""Messages of the ``set_traffic`` activity: the cluster changes of canary and blue-green steps (issue 11).

Imported by ``workflows.progressive`` (which decides) and ``activities.traffic`` (which changes the cluster).
Pure data, no I/O.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

from contract.models import ObjectRef, RevisionRef
from contract.spec import ReleaseSpec


class TrafficAction(str, Enum):
    PREPARE = "prepare"  # is the target live (else: plain rolling)? StatefulSet: partition = replicas before apply
    CANARY_WEIGHT = "canary-weight"  # Deployment: <name>-canary replicas = ceil(w% x total); StatefulSet: partition
    CANARY_ABORT = "canary-abort"  # canary to 0 pods and deleted, stable back to all replicas
    CANARY_PROMOTED = "canary-promoted"  # after the stable took the new template: delete the canary; partition 0
    PREVIEW = "preview"  # blue-green: <name>-preview with the new template; previewService selects it
    SWITCH_ACTIVE = "switch-active"  # activeService selects the preview pods
    SWITCH_BACK = "switch-back"  # activeService selects the stable pods again
    BG_CLEANUP = "bg-cleanup"  # Services back to the release's selectors, preview deleted
    PARTITION_RESET = "partition-reset"  # StatefulSet after a rollback: partition 0 again
    INFO = "info"  # pod-template hashes and labels of both tracks, for analysis queries


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TrafficInput(_Msg):
    spec: ReleaseSpec
    revision: RevisionRef
    workload: ObjectRef
    action: TrafficAction
    weight: int = Field(0, ge=0, le=100)
    stable_hash: str = ""  # blue-green SWITCH_BACK: the stable ReplicaSet's pod-template-hash (from PREVIEW)


class TrafficResult(_Msg):
    live: bool = True  # the target existed before this release (a canary needs a stable to compare with)
    total: int = 0
    canary_replicas: int = 0
    stable_replicas: int = 0
    partition: int | None = None
    wait_for: list[ObjectRef] = Field(default_factory=list)  # workloads to wait ready for after this change
    canary_hash: str = ""
    stable_hash: str = ""
    canary_labels: dict[str, str] = Field(default_factory=dict)
    stable_labels: dict[str, str] = Field(default_factory=dict)
    message: str = ""
