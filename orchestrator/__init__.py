"""Rollwright: durable Kubernetes rollouts on Temporal.

Shared constants live here so the CLI, the worker and the workflows agree on names without importing each other.
"""

__version__ = "0.1.0"

DEFAULT_TASK_QUEUE = "rollwright"
FIELD_MANAGER = "rollwright"
WORKFLOW_TYPE = "RolloutWorkflow"


def workflow_id(app: str, environment: str) -> str:
    """The rollout's workflow ID, which is also its lock: one running rollout per app and environment.

    Dots separate the parts because app and environment are DNS labels, which may contain ``-`` but never ``.``:
    the ID names exactly one (app, environment). The former ``rollout-<app>-<env>`` did not: (``a-b``, ``c``) and
    (``a``, ``b-c``) shared one ID, one lock and one set of steering commands."""
    return f"rollout.{app}.{environment}"


def legacy_workflow_id(app: str, environment: str) -> str:
    """The ID used before 0.2 (ambiguous, see ``workflow_id``); still recognised for rollouts started then."""
    return f"rollout-{app}-{environment}"


def parse_workflow_id(wid: str) -> tuple[str, str] | None:
    """(app, environment) of a current-form workflow ID, None for anything else."""
    parts = wid.split(".")
    return (parts[1], parts[2]) if len(parts) == 3 and parts[0] == "rollout" else None
