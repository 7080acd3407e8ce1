"""The worker's side of release bundles: fetch by digest, verify, cache per digest, and never open an input path.

Called by ``activities.objects`` (manifests, for prepare/snapshot/apply/prune), ``activities.source`` (the image
tag) and ``activities.build`` (the build context). Every activity resolves the bundle itself, so any worker on
any machine can run any step; a worker that already has a digest in its cache reads nothing from the network.

The cache (``ROLLWRIGHT_BUNDLE_CACHE``, default ``~/.cache/rollwright/bundles``) holds verified blobs under
``blobs/sha256/<hex>`` and extracted manifest layers under ``trees/<hex>``; both are written to a temporary name
and renamed, so a crash never leaves a half-written entry that a later step would trust.

Path releases (a spec with ``base_dir`` and no ``bundle``) are refused unless ``ROLLWRIGHT_PATH_RELEASES=true``:
otherwise whoever starts a workflow could make the worker read, build and push any directory it can see.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from temporalio.exceptions import ApplicationError

from contract.spec import ReleaseSpec
from releases import bundle as b

# Every activity of a rollout resolves its bundle (prepare twice, snapshot, apply, prune...), and a fleet rollout
# resolves hundreds at once. Resolved bundles are remembered per (cache, reference) — a reference names content,
# so it never changes — and downloads are serialized per reference only (striped locks), not across bundles:
# one global lock made 20 concurrent prepares wait for each other's downloads (issue 13: 5-10 s per prepare).
_STRIPES = [threading.Lock() for _ in range(64)]
_MEMO_MAX = 512
_memo: OrderedDict[tuple[str, str], Fetched] = OrderedDict()
_memo_lock = threading.Lock()


def cache_dir() -> Path:
    env = os.environ.get("ROLLWRIGHT_BUNDLE_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rollwright"
    return base if env else base / "bundles"


def path_releases_allowed() -> bool:
    return os.environ.get("ROLLWRIGHT_PATH_RELEASES", "").lower() in ("1", "true", "yes")


def _invalid(msg: str) -> ApplicationError:
    return ApplicationError(msg, type="InvalidRelease", non_retryable=True)


def _fetch_error(ref: str, e: Exception) -> ApplicationError:
    # A missing or corrupt bundle will not get better by retrying; a registry that is down might.
    if isinstance(e, b.BundleError):
        return _invalid(f"bundle {ref}: {e}")
    return ApplicationError(f"bundle {ref}: registry unreachable: {e}", type="RegistryError")


class _LazyRegistry:
    """Opens the registry client (an HTTP client with its TLS context) only when a blob is not in the cache."""

    def __init__(self, repo: str) -> None:
        self.repo = repo
        self.reg: b.Registry | None = None

    def get(self) -> b.Registry:
        if self.reg is None:
            self.reg = b.Registry(self.repo)
        return self.reg

    def close(self) -> None:
        if self.reg is not None:
            self.reg.http.close()


def blob(reg: b.Registry | _LazyRegistry, digest: str, max_bytes: int, kind: str = "blobs") -> Path:
    """The verified blob (or manifest) in the cache, downloaded once per digest."""
    path = cache_dir() / "blobs" / "sha256" / digest.split(":", 1)[1]
    if path.is_file():
        return path
    if isinstance(reg, _LazyRegistry):
        reg = reg.get()
    data = reg.get_verified(kind, digest, max_bytes, accept=b.OCI_MANIFEST if kind == "manifests" else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


def _extract(blob_path: Path, digest: str, limits: b.Limits) -> Path:
    """Extracts a manifests layer into ``trees/<hex>``: regular files with safe names only, within the limits."""
    dest = cache_dir() / "trees" / digest.split(":", 1)[1]
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".tmp-"))
    try:
        total = count = 0
        with tarfile.open(blob_path, mode="r:gz") as t:
            for m in t:
                count += 1
                total += m.size
                if not m.isreg() or not b.is_safe_name(m.name):
                    raise b.BundleError(f"manifests layer holds {m.name!r}, which is not a regular file with a safe "
                                        f"relative name")
                if count > limits.max_files or m.size > limits.max_file_bytes or total > limits.max_bytes:
                    raise b.BundleError("manifests layer exceeds the bundle limits")
                out = tmp / m.name
                out.parent.mkdir(parents=True, exist_ok=True)
                src = t.extractfile(m)
                assert src is not None
                with open(out, "xb") as f:
                    shutil.copyfileobj(src, f)
        try:
            os.rename(tmp, dest)
        except OSError:  # another activity extracted the same digest first: identical content, keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


class Fetched:
    """A bundle resolved on this worker: where its manifests are, and its build context blob (if any)."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        limits = b.Limits.from_env()
        repo, digest = b.parse_ref(ref)
        reg = _LazyRegistry(repo)
        try:
            m = b.check_manifest(blob(reg, digest, 1024 * 1024, "manifests").read_bytes(), ref, limits)
            self.config = json.loads(blob(reg, m["config"]["digest"], 1024 * 1024).read_bytes())
            man = b.layer(m, b.MANIFESTS_TYPE)
            if man is None:
                raise b.BundleError("bundle has no manifests layer")
            self.tree = _extract(blob(reg, man["digest"], limits.max_bytes), man["digest"], limits)
            ctx = b.layer(m, b.CONTEXT_TYPE)
            self.context_digest: str | None = ctx["digest"] if ctx else None
            self.context_blob = blob(reg, ctx["digest"], limits.max_bytes) if ctx else None
        finally:
            reg.close()
        names = self.config.get("manifests")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and b.is_safe_name(n)
                                                                and (self.tree / n).is_file() for n in names):
            raise b.BundleError("bundle config lists manifests that are not files of its manifests layer")
        self.manifests: list[str] = names

    def still_cached(self) -> bool:
        """False when someone emptied the cache since: resolve again rather than trust a remembered path."""
        return self.tree.is_dir() and (self.context_blob is None or self.context_blob.is_file())


def _remembered(key: tuple[str, str]) -> Fetched | None:
    with _memo_lock:
        f = _memo.get(key)
        if f is not None:
            _memo.move_to_end(key)
    return f if f is not None and f.still_cached() else None


def fetch(ref: str) -> Fetched:
    key = (str(cache_dir()), ref)
    f = _remembered(key)
    if f is not None:
        return f
    try:
        with _STRIPES[hash(key) % len(_STRIPES)]:  # one download per bundle even when parallel activities ask
            f = _remembered(key) or Fetched(ref)
        with _memo_lock:
            _memo[key] = f
            while len(_memo) > _MEMO_MAX:
                _memo.popitem(last=False)
        return f
    except (b.BundleError, OSError, tarfile.TarError, ValueError) as e:
        raise _fetch_error(ref, e) from None
    except Exception as e:  # httpx transport errors and the like: retryable
        raise _fetch_error(ref, e) from None


def local_spec(spec: ReleaseSpec) -> ReleaseSpec:
    """The spec an activity may read files for: base_dir and manifests point into the verified cache. Input paths
    (``base_dir``, ``manifests``, ``image.context``) are ignored for a bundle and refused without one."""
    if spec.bundle is None:
        if spec.from_revision is not None or path_releases_allowed():
            return spec
        raise _invalid("this worker only runs release bundles: the input has no `bundle` (start with `rollwright "
                       "rollout start`, or push with `rollwright bundle push` and pass its reference as \"bundle\"); "
                       "set ROLLWRIGHT_PATH_RELEASES=true on the worker to read base_dir paths instead")
    f = fetch(spec.bundle)
    return spec.model_copy(update={"base_dir": str(f.tree), "manifests": f.manifests})


def context_fileobj(spec: ReleaseSpec) -> io.BufferedReader | None:
    """The build context blob (tar.gz, sent to the engine as is), or None for a path release."""
    if spec.bundle is None:
        return None
    f = fetch(spec.bundle)
    if f.context_blob is None:
        raise _invalid(f"bundle {spec.bundle} has no build context but the release has an image")
    return open(f.context_blob, "rb")


def context_digest(spec: ReleaseSpec) -> str | None:
    if spec.bundle is None:
        return None
    f = fetch(spec.bundle)
    if f.context_digest is None:
        raise _invalid(f"bundle {spec.bundle} has no build context but the release has an image")
    return f.context_digest
