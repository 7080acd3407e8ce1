"""``rollwright setup``: registers Rollwright's search attributes on a Temporal server we did not start.

Called by the CLI. The dev server started by scripts/temporal.sh registers the same list at start; keep both in
sync with ``SEARCH_ATTRIBUTES`` (a workflow that upserts an unregistered attribute is stuck, so this matters).
"""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest

from orchestrator.config import Settings
from orchestrator.connect import connect

SEARCH_ATTRIBUTES = {
    "RolloutApp": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "RolloutEnvironment": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "RolloutPhase": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "RolloutOutcome": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "RolloutImage": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "RolloutRevision": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "RolloutInitiator": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "RolloutStep": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,  # canary / blue-green step kind (issue 11)
}


async def register_search_attributes(settings: Settings) -> list[str]:
    client = await connect(settings, tracing=False)
    have = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=settings.temporal_namespace))
    missing = {k: v for k, v in SEARCH_ATTRIBUTES.items() if k not in have.custom_attributes}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=settings.temporal_namespace, search_attributes=missing))
    return sorted(missing)
