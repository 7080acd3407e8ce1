"""The package graph runs one way: contract ← releases ← activities ← orchestrator.worker, contract ← workflows.

Every import statement of every module (top-level and inside functions) is read with ``ast``, so a lazy import
that climbs back up is caught too. ``orchestrator`` is the top: only the worker (the composition root that
registers activities) and ``revisions_view`` (reads revision records with the activities' Kubernetes client) may
import ``activities``; the client and CLI stay free of docker/kubernetes code paths.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

INTERNAL = {"contract", "releases", "workflows", "activities", "orchestrator"}
ALLOWED = {
    "contract": {"contract"},
    "releases": {"contract", "releases"},
    "workflows": {"contract", "workflows"},
    "activities": {"contract", "releases", "activities"},
    "orchestrator": {"contract", "releases", "workflows", "orchestrator"},
}
MAY_IMPORT_ACTIVITIES = {"orchestrator/worker.py", "orchestrator/revisions_view.py"}


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out & INTERNAL


def modules() -> list[Path]:
    return sorted(p for pkg in INTERNAL for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_runs_back_up(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    allowed = ALLOWED[rel.split("/")[0]] | ({"activities"} if rel in MAY_IMPORT_ACTIVITIES else set())
    bad = imports(path) - allowed
    assert not bad, f"{rel} imports {sorted(bad)}; allowed: {sorted(allowed)}"


def test_the_rule_catches_a_violation(tmp_path: Path) -> None:
    p = tmp_path / "m.py"
    p.write_text("def f():\n    from orchestrator.client import RolloutClient\n    import activities.kube\n")
    assert imports(p) == {"orchestrator", "activities"}


def test_old_module_names_are_the_same_modules() -> None:
    import contract.models
    import contract.spec
    import orchestrator.loader
    import orchestrator.models
    import orchestrator.spec
    import releases.loader

    assert orchestrator.spec is contract.spec and orchestrator.models is contract.models
    assert orchestrator.loader is releases.loader
    assert orchestrator.spec.ReleaseSpec is contract.spec.ReleaseSpec
