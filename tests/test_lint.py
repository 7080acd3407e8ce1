"""Static checks as tests, so CI fails on them: ruff (style, bugs) and mypy (types) over the packages."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_ruff_reports_nothing() -> None:
    r = subprocess.run([str(BIN / "ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_reports_nothing() -> None:
    r = subprocess.run([str(BIN / "mypy")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr


def test_workflow_module_does_no_io_imports() -> None:
    """Workflows stay deterministic: their modules never import the I/O clients (the sandbox would also refuse)."""
    for p in (ROOT / "workflows").glob("*.py"):
        text = p.read_text()
        for banned in ("^from activities", "import kubernetes", "import docker", "import httpx", "datetime.now",
                       "time.time", "import requests"):
            hit = re.search(banned, text, re.M) if banned.startswith("^") else banned in text
            assert not hit, f"{p.name}: {banned}"
