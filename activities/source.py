"""Derives an image tag from the build's source, so rebuilding unchanged source is a cache hit.

Called by ``activities.prepare`` (which fixes the tag before anything is built) and ``activities.build``.
The tag is ``src-`` + 12 hex of a SHA-256 over every file docker would receive (path, mode, content; what
.dockerignore excludes does not count, so a log written under the context cannot change the tag), the Dockerfile
path, the build args and the target: the same inputs always give the same tag, on any machine.
"""

from __future__ import annotations

import hashlib
import os

from contract.spec import ImageSpec, ReleaseSpec
from releases.bundle import build_files, check_context, context_dir

__all__ = ["build_files", "check_context", "context_dir", "source_tag"]


def source_tag(spec: ReleaseSpec) -> str:
    img: ImageSpec = spec.image  # type: ignore[assignment]
    if img.tag:
        return img.tag
    from activities.bundles import context_digest

    layer = context_digest(spec)
    if layer is not None:
        # The context layer is deterministic (releases.bundle), so its digest is the content hash.
        key = f"{layer}|{img.dockerfile}|{sorted(img.build_args.items())}|{img.target}"
        return "src-" + hashlib.sha256(key.encode()).hexdigest()[:12]
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
