"""orchestrator.bytecode: the workflow sandbox re-imports workflow modules for every run, so without .pyc files
(PYTHONDONTWRITEBYTECODE on a checkout) each run compiled them again. Checked with real imports in this process."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.bytecode import ensure_workflow_bytecode


@pytest.fixture
def pyflags() -> Iterator[None]:
    saved = sys.dont_write_bytecode, sys.pycache_prefix
    sys.dont_write_bytecode, sys.pycache_prefix = True, None
    yield
    sys.dont_write_bytecode, sys.pycache_prefix = saved


def module(tmp_path: Path, name: str) -> Path:
    src = tmp_path / "src" / f"{name}.py"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text("VALUE = 42\n")
    return src


def import_fresh(src: Path, name: str) -> None:
    """As the sandbox does: a new module object each time, through the normal loader (which reads/writes .pyc)."""
    sys.modules.pop(name, None)
    sys.path.insert(0, str(src.parent))
    try:
        assert importlib.import_module(name).VALUE == 42
    finally:
        sys.path.remove(str(src.parent))
        sys.modules.pop(name, None)


def test_without_bytecode_it_is_cached_privately_and_never_next_to_the_source(pyflags: None, tmp_path: Path) -> None:
    src = module(tmp_path, "rw_bytecode_probe_a")
    import_fresh(src, "rw_bytecode_probe_a")
    assert not (src.parent / "__pycache__").exists()  # the control: PYTHONDONTWRITEBYTECODE wrote nothing
    cache = tmp_path / "cache"
    assert ensure_workflow_bytecode(str(src), cache) == cache
    assert sys.pycache_prefix == str(cache) and not sys.dont_write_bytecode
    assert (cache.stat().st_mode & 0o777) == 0o700
    import_fresh(src, "rw_bytecode_probe_a")
    pyc = Path(importlib.util.cache_from_source(str(src)))
    assert pyc.is_file() and pyc.is_relative_to(cache), pyc
    assert not (src.parent / "__pycache__").exists()
    # Called again (a second worker in the process): nothing more to change.
    assert ensure_workflow_bytecode(str(src), cache) is None


def test_nothing_changes_when_bytecode_exists_or_writing_is_on(pyflags: None, tmp_path: Path) -> None:
    src = module(tmp_path, "rw_bytecode_probe_b")
    sys.dont_write_bytecode = False
    assert ensure_workflow_bytecode(str(src), tmp_path / "c1") is None
    import_fresh(src, "rw_bytecode_probe_b")  # writes src/__pycache__, as pip does at install
    sys.dont_write_bytecode = True
    assert ensure_workflow_bytecode(str(src), tmp_path / "c2") is None
    assert sys.pycache_prefix is None and sys.dont_write_bytecode
    assert not (tmp_path / "c1").exists() and not (tmp_path / "c2").exists()


def test_a_cache_directory_others_can_write_is_refused(pyflags: None, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    src = module(tmp_path, "rw_bytecode_probe_c")
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with caplog.at_level(logging.WARNING, logger="orchestrator.bytecode"):
        assert ensure_workflow_bytecode(str(src), shared) is None
    assert sys.pycache_prefix is None and sys.dont_write_bytecode
    assert "not private" in caplog.text
