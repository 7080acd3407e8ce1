"""Rollwright: durable Kubernetes rollouts on Temporal. The top of the package graph: CLI, client, worker.

Shared names live in ``contract`` (the bottom of the graph) and are re-exported here for existing imports.
"""

from contract import (
    DEFAULT_TASK_QUEUE,
    FIELD_MANAGER,
    WORKFLOW_TYPE,
    legacy_workflow_id,
    parse_workflow_id,
    workflow_id,
)

__version__ = "0.1.0"
__all__ = ["DEFAULT_TASK_QUEUE", "FIELD_MANAGER", "WORKFLOW_TYPE", "__version__", "legacy_workflow_id",
           "parse_workflow_id", "workflow_id"]
