"""Logging setup: one JSON object per line (or plain text for humans), with workflow/activity IDs attached.

Called by ``orchestrator.worker`` at start and by the CLI. The Temporal SDK's ``activity.logger`` and
``workflow.logger`` put their context in ``record.temporal_activity`` / ``record.temporal_workflow``; the JSON
formatter lifts the IDs out of them so log queries can join on workflow_id.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_CTX_FIELDS = {"workflow_id", "run_id", "activity_id", "activity_type", "workflow_type", "attempt", "task_queue"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        for attr in ("temporal_activity", "temporal_workflow"):
            ctx = getattr(record, attr, None)
            if isinstance(ctx, dict):
                out.update({k: v for k, v in ctx.items() if k in _CTX_FIELDS})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("kubernetes", "urllib3", "httpx", "docker", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
