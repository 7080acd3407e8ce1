"""Rollwright: durable Kubernetes rollouts on Temporal.

Shared constants live here so the CLI, the worker and the workflows agree on names without importing each other.
"""

__version__ = "0.1.0"

DEFAULT_TASK_QUEUE = "rollwright"
FIELD_MANAGER = "rollwright"
WORKFLOW_TYPE = "RolloutWorkflow"


def workflow_id(app: str, environment: str) -> str:
    """The rollout's workflow ID, which is also its lock: one running rollout per app and environment."""
    return f"rollout-{app}-{environment}"
