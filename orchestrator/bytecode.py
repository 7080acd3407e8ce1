"""Bytecode for the workflow sandbox's imports. Called once by ``orchestrator.worker.run_worker`` at start-up.

Temporal's workflow sandbox imports the workflow modules again for every workflow run it creates (a fresh module
state per run: that is how it keeps runs isolated). Python reads those modules from ``.pyc`` files when it has
them. It has none when ``PYTHONDONTWRITEBYTECODE`` is set on a source checkout (an editable install, CI, this
repository's scripts): then every new run compiles ``workflows/*.py`` from source. In a 200-rollout fleet that was
half of the time spent creating runs and about an eighth of the worker's CPU (py-spy, issue 13).

The installed image has its ``.pyc`` files (pip compiles them), so nothing changes there. Without them, bytecode is
written to a private directory (``sys.pycache_prefix``), never next to the source: the reason to set
``PYTHONDONTWRITEBYTECODE`` (a clean or read-only tree) still holds.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import stat
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def ensure_workflow_bytecode(module_file: str, cache_dir: Path | None = None) -> Path | None:
    """Turns bytecode writing on, into a private cache directory, when ``module_file`` (a workflow module) has no
    up-to-date ``.pyc`` and writing is off. Returns that directory, or None when nothing had to change."""
    if not sys.dont_write_bytecode or sys.pycache_prefix or _has_bytecode(module_file):
        return None
    d = cache_dir or Path(tempfile.gettempdir()) / f"rollwright-pycache-{os.getuid()}"
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = d.stat()
    except OSError as e:
        log.warning("workflow modules are compiled for every run: no bytecode cache at %s (%s)", d, e)
        return None
    # Python executes what it finds there: a directory someone else owns or can write to could plant code.
    if st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        log.warning("workflow modules are compiled for every run: %s is not private to this user", d)
        return None
    sys.pycache_prefix = str(d)
    sys.dont_write_bytecode = False
    return d


def _has_bytecode(module_file: str) -> bool:
    pyc = Path(importlib.util.cache_from_source(module_file))
    try:
        return pyc.stat().st_mtime_ns >= Path(module_file).stat().st_mtime_ns
    except OSError:
        return False
