"""A deliberately trivial workflow for ``tests/test_stack.py``: it proves the Temporal dev server, an in-process
worker and the custom search attributes work, without any of Rollwright's own workflow code involved.

It lives in its own module (not in the test file) because the workflow sandbox re-imports the module that defines a
workflow; a module holding only temporalio imports keeps that re-import cheap and free of pytest/kubernetes/docker.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import SearchAttributeKey

# The same Keyword attribute the rollout workflow uses, registered on the dev server by scripts/temporal.sh.
ROLLOUT_APP = SearchAttributeKey.for_keyword("RolloutApp")


@workflow.defn(name="TrivialWorkflow")
class TrivialWorkflow:
    @workflow.run
    async def run(self, app: str) -> str:
        # Upserting (rather than setting the attribute at start) exercises a workflow-side visibility update.
        workflow.upsert_search_attributes([ROLLOUT_APP.value_set(app)])
        return f"hello {app}"
