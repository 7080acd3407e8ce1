"""Derives an image tag from the build's source, so rebuilding unchanged source is a cache hit.

Called by ``activities.prepare`` (which fixes the tag before anything is built) and ``activities.build``.
The tag is ``src-`` + 12 hex of a SHA-256 over every file of the context (path, mode, content), the Dockerfile
path, the build args and the target: the same inputs always give the same tag, on any machine.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from orchestrator.loader import ReleaseError
from orchestrator.spec import ImageSpec, ReleaseSpec

_SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def context_dir(spec: ReleaseSpec) -> Path:
    assert spec.image is not None
    p = Path(spec.image.context)
    return p if p.is_absolute() else Path(spec.base_dir) / p


def check_context(spec: ReleaseSpec) -> Path:
    ctx = context_dir(spec)
    if not ctx.is_dir():
        raise ReleaseError(str(ctx), "build context directory not found", field="image.context")
    if not (ctx / spec.image.dockerfile).is_file():  # type: ignore[union-attr]
        raise ReleaseError(str(ctx / spec.image.dockerfile), "Dockerfile not found",  # type: ignore[union-attr]
                           field="image.dockerfile")
    return ctx


def source_tag(spec: ReleaseSpec) -> str:
    img: ImageSpec = spec.image  # type: ignore[assignment]
    if img.tag:
        return img.tag
    ctx = check_context(spec)
    h = hashlib.sha256()
    for root, dirs, files in os.walk(ctx):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for f in sorted(files):
            p = Path(root) / f
            rel = p.relative_to(ctx).as_posix()
            h.update(rel.encode() + b"\0" + oct(p.stat().st_mode & 0o777).encode() + b"\0")
            h.update(p.read_bytes() if not p.is_symlink() else os.readlink(p).encode())
    h.update(f"{img.dockerfile}|{sorted(img.build_args.items())}|{img.target}".encode())
    return "src-" + h.hexdigest()[:12]
