"""Derives an image tag from the build's source, so rebuilding unchanged source is a cache hit.

Called by ``activities.prepare`` (which fixes the tag before anything is built) and ``activities.build``.
The tag is ``src-`` + 12 hex of a SHA-256 over every file docker would receive (path, mode, content; what
.dockerignore excludes does not count, so a log written under the context cannot change the tag), the Dockerfile
path, the build args and the target: the same inputs always give the same tag, on any machine.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from docker.utils.build import exclude_paths

from orchestrator.loader import ReleaseError
from orchestrator.spec import ImageSpec, ReleaseSpec


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


def build_files(ctx: Path, dockerfile: str) -> list[str]:
    """Exactly the files ``docker build`` would receive: the context minus what .dockerignore excludes."""
    ignore = ctx / ".dockerignore"
    patterns = [ln.strip() for ln in ignore.read_text().splitlines() if ln.strip() and not ln.startswith("#")] \
        if ignore.is_file() else []
    patterns.append(".git")  # never part of the image, whatever .dockerignore says
    files = exclude_paths(str(ctx), patterns, dockerfile=dockerfile)
    return sorted(f for f in files if (ctx / f).is_file() or (ctx / f).is_symlink())


def source_tag(spec: ReleaseSpec) -> str:
    img: ImageSpec = spec.image  # type: ignore[assignment]
    if img.tag:
        return img.tag
    ctx = check_context(spec)
    h = hashlib.sha256()
    for rel in build_files(ctx, img.dockerfile):
        p = ctx / rel
        try:
            mode = p.lstat().st_mode
            data = os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            continue  # vanished during the walk (a journal file, say): not part of any build either
        h.update(rel.encode() + b"\0" + oct(mode & 0o777).encode() + b"\0" + data)
    h.update(f"{img.dockerfile}|{sorted(img.build_args.items())}|{img.target}".encode())
    return "src-" + h.hexdigest()[:12]
