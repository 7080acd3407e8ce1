"""Release bundles: a release (spec, manifests, build context) as an immutable, content-addressed OCI artifact.

Called by ``orchestrator.client`` (``RolloutClient.start`` packs and pushes before starting a rollout), the CLI
(``rollwright bundle push|inspect``) and ``activities.bundles`` (the worker fetches by digest, verifies, caches).
Uses the registry HTTP API directly through httpx (already a dependency): an artifact is three blob uploads and
one manifest PUT, smaller than a client library and its dependencies.

The artifact (``artifactType`` ``application/vnd.rollwright.release.v1``)::

    config   application/vnd.rollwright.release.config.v1+json   {"manifests": [...], "context": bool, "spec": {...}}
    layer 0  application/vnd.rollwright.release.manifests.v1.tar+gzip   the manifest files (regular files only)
    layer 1  application/vnd.rollwright.release.context.v1.tar+gzip     the docker build context, .dockerignore
                                                                        applied; sent to the engine as it is

Tar and gzip are written deterministically (sorted names, mtime 0, uid/gid 0, normalised modes), so the same
release always has the same digest and a re-push uploads nothing.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import re
import ssl
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.auth
import httpx
from docker.utils.build import exclude_paths

from contract.spec import ReleaseSpec
from releases import mirrors
from releases.loader import ReleaseError, manifest_files

ARTIFACT_TYPE = "application/vnd.rollwright.release.v1"
CONFIG_TYPE = "application/vnd.rollwright.release.config.v1+json"
MANIFESTS_TYPE = "application/vnd.rollwright.release.manifests.v1.tar+gzip"
CONTEXT_TYPE = "application/vnd.rollwright.release.context.v1.tar+gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
REF_RE = re.compile(r"^(?P<registry>[a-zA-Z0-9.-]+(:[0-9]+)?)/(?P<path>[a-z0-9]+([._/-][a-z0-9]+)*)"
                    r"@(?P<digest>sha256:[0-9a-f]{64})$")
# What a file in the manifests layer may be called: no '..', no absolute path, nothing a shell or a path join
# could misread. Names are checked when packing and again, independently, when a worker extracts.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*(/[A-Za-z0-9_][A-Za-z0-9_.+-]*)*$")


class BundleError(Exception):
    """A bundle that cannot be fetched or is not what its digest says (raised by the worker side)."""


@dataclass(frozen=True)
class Limits:
    """Bundle limits, checked from file sizes before anything is read or pushed, and again when a worker
    downloads or extracts. Environment: ``ROLLWRIGHT_BUNDLE_MAX_BYTES``, ``…_MAX_FILES``, ``…_MAX_FILE_BYTES``."""

    max_bytes: int = 256 * 1024 * 1024
    max_files: int = 20_000
    max_file_bytes: int = 64 * 1024 * 1024

    @classmethod
    def from_env(cls) -> Limits:
        d = cls()
        get = os.environ.get
        return cls(int(get("ROLLWRIGHT_BUNDLE_MAX_BYTES") or d.max_bytes),
                   int(get("ROLLWRIGHT_BUNDLE_MAX_FILES") or d.max_files),
                   int(get("ROLLWRIGHT_BUNDLE_MAX_FILE_BYTES") or d.max_file_bytes))


@dataclass
class Blob:
    media_type: str
    data: bytes
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}
        if self.annotations:
            d["annotations"] = self.annotations
        return d


@dataclass
class Bundle:
    config: Blob
    layers: list[Blob]
    manifest: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()


# ---- packing (CLI / client side: reads the operator's files) -------------------------------------------------------


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




class _Tar:
    """A deterministic tar.gz writer that counts against the limits."""

    def __init__(self, limits: Limits, budget: list[int], what: str) -> None:
        self.limits, self.budget, self.what = limits, budget, what  # budget = [bytes, files] shared by layers
        self.buf = io.BytesIO()
        self.gz = gzip.GzipFile(filename="", mode="wb", fileobj=self.buf, mtime=0, compresslevel=6)
        self.tar = tarfile.open(fileobj=self.gz, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115 (closed in close())

    def _count(self, src: Path, size: int, fld: str) -> None:
        lim = self.limits
        self.budget[0] += size
        self.budget[1] += 1
        if size > lim.max_file_bytes:
            raise ReleaseError(str(src), f"file is {size} bytes; a file in a release bundle is at most "
                               f"{lim.max_file_bytes} bytes (ROLLWRIGHT_BUNDLE_MAX_FILE_BYTES)", field=fld)
        if self.budget[1] > lim.max_files:
            raise ReleaseError(str(src), f"the release bundle would hold more than {lim.max_files} files "
                               f"(ROLLWRIGHT_BUNDLE_MAX_FILES); exclude files with .dockerignore", field=fld)
        if self.budget[0] > lim.max_bytes:
            raise ReleaseError(str(src), f"the release bundle would exceed {lim.max_bytes} bytes with this file "
                               f"(ROLLWRIGHT_BUNDLE_MAX_BYTES); exclude files with .dockerignore", field=fld)

    def add_file(self, name: str, src: Path, fld: str, *, follow: bool) -> None:
        st = src.stat() if follow else src.lstat()
        ti = tarfile.TarInfo(name)
        ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 0, "", ""
        if not follow and src.is_symlink():
            self._count(src, 0, fld)
            ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, os.readlink(src), 0o777
            self.tar.addfile(ti)
            return
        self._count(src, st.st_size, fld)
        ti.mode = 0o755 if st.st_mode & 0o111 else 0o644
        data = src.read_bytes()
        ti.size = len(data)
        self.tar.addfile(ti, io.BytesIO(data))

    def close(self, media_type: str) -> Blob:
        self.tar.close()
        self.gz.close()
        return Blob(media_type, self.buf.getvalue(), {"org.opencontainers.image.title": self.what})


def _manifest_names(spec: ReleaseSpec, files: list[Path]) -> list[str]:
    """Names inside the bundle: the path relative to base_dir when inside it, else ``external/<n>/<name>``."""
    base = Path(spec.base_dir).resolve()
    names: list[str] = []
    for i, f in enumerate(files):
        try:
            name = f.resolve().relative_to(base).as_posix()
        except ValueError:
            name = f"external/{i}/{f.name}"
        if not _NAME_RE.match(name):
            name = f"renamed/{i}/" + re.sub(r"[^A-Za-z0-9_.+-]", "_", f.name).lstrip(".-") or "file"
        names.append(name)
    return names


def pack(spec: ReleaseSpec, limits: Limits | None = None) -> Bundle:
    """Packs a release loaded from disk (``base_dir`` set by the loader) into a bundle. Raises ReleaseError, before
    any network call, for a missing file or an exceeded limit."""
    limits = limits or Limits.from_env()
    budget = [0, 0]
    files = manifest_files(spec)
    names = _manifest_names(spec, files)
    mt = _Tar(limits, budget, "manifests")
    for name, f in sorted(zip(names, files, strict=True)):
        mt.add_file(name, f, "manifests", follow=True)
    layers = [mt.close(MANIFESTS_TYPE)]
    if spec.image is not None and spec.from_revision is None:
        ctx = check_context(spec)
        ct = _Tar(limits, budget, "context")
        for rel in build_files(ctx, spec.image.dockerfile):
            ct.add_file(rel, ctx / rel, "image.context", follow=False)
        layers.append(ct.close(CONTEXT_TYPE))
    portable = spec.model_dump(mode="json", exclude={"base_dir", "bundle", "initiator"}, exclude_defaults=True)
    config = Blob(CONFIG_TYPE, json.dumps({"manifests": names, "context": len(layers) > 1, "spec": portable},
                                          sort_keys=True, separators=(",", ":")).encode())
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": ARTIFACT_TYPE,
                           "config": config.descriptor(), "layers": [b.descriptor() for b in layers],
                           "annotations": {"io.rollwright.app": spec.app, "io.rollwright.environment": spec.environment}},
                          sort_keys=True, separators=(",", ":")).encode()
    return Bundle(config, layers, manifest)


def default_repository(spec: ReleaseSpec) -> str:
    """``ROLLWRIGHT_BUNDLE_REPOSITORY``, else ``<the image's registry, or 127.0.0.1:5000>/rollwright-bundles/<app>``."""
    env = os.environ.get("ROLLWRIGHT_BUNDLE_REPOSITORY")
    if env:
        return env.rstrip("/")
    registry = spec.image.registry if spec.image else "127.0.0.1:5000"
    return f"{registry}/rollwright-bundles/{spec.app}"


# ---- registry HTTP API ------------------------------------------------------------------------------------------


def registry_url(registry: str) -> str:
    """Plain HTTP for loopback and ``ROLLWRIGHT_INSECURE_REGISTRIES``, HTTPS otherwise; requests go to the
    registry's mirror when ``ROLLWRIGHT_REGISTRY_MIRRORS`` maps it (``releases.mirrors``)."""
    return mirrors.registry_url(registry)


def docker_credentials(registry: str) -> tuple[str, str] | None:
    """(username, password) for ``registry`` from the Docker config, or None when it has none."""
    try:
        cfg = docker.auth.load_config()
        auth: dict[str, Any] | None = docker.auth.resolve_authconfig(cfg, registry)
    except Exception:  # an unreadable config or a failing credential helper: behave as "no credentials"
        return None
    if not auth:
        return None
    user = auth.get("username") or auth.get("Username")
    password = auth.get("password") or auth.get("Password") or auth.get("IdentityToken")
    return (str(user), str(password)) if user and password else None


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS context (same trust: certifi, SSL_CERT_FILE/SSL_CERT_DIR), built once per process.
    Building one loads the CA bundle (tens of ms of CPU); a fleet rollout opens hundreds of registry clients."""
    return httpx.create_ssl_context()


class Registry:
    """One repository of one registry, with the Docker config's credentials answering Basic/Bearer challenges."""

    def __init__(self, repository: str, *, timeout: float = 60) -> None:
        self.registry, self.path = repository.split("/", 1)
        self.base = registry_url(self.registry)
        self.http = httpx.Client(timeout=timeout, verify=tls_context())
        self._auth: dict[str, str] = {}

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def request(self, method: str, url: str, *, push: bool = False, **kw: Any) -> httpx.Response:
        url = url if url.startswith("http") else f"{self.base}/v2/{self.path}/{url}"
        headers = {**kw.pop("headers", {}), **self._auth}
        r = self.http.request(method, url, headers=headers, **kw)
        if r.status_code != 401:
            return r
        creds = docker_credentials(self.registry)
        if creds is None:
            raise BundleError(f"registry {self.registry} requires credentials and the Docker config has none for it "
                              f"(docker login {self.registry})")
        scheme, _, rest = r.headers.get("WWW-Authenticate", "").partition(" ")
        params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if scheme.lower() == "bearer" and params.get("realm"):
            scope = f"repository:{self.path}:pull" + (",push" if push else "")
            t = self.http.get(params["realm"], params={"service": params.get("service", ""), "scope": scope},
                              auth=creds)
            if t.status_code in (401, 403):
                raise BundleError(f"registry {self.registry} refused the credentials of user {creds[0]!r}")
            body = t.json()
            self._auth = {"Authorization": f"Bearer {body.get('token') or body.get('access_token')}"}
        else:
            self._auth = {"Authorization": httpx.BasicAuth(*creds)._auth_header}
        r = self.http.request(method, url, headers={**headers, **self._auth}, **kw)
        if r.status_code in (401, 403):
            raise BundleError(f"registry {self.registry} refused the credentials of user {creds[0]!r} "
                              f"(HTTP {r.status_code})")
        return r

    def push_blob(self, blob: Blob) -> bool:
        """Uploads a blob unless the registry has it; True when it was uploaded."""
        if self.request("HEAD", f"blobs/{blob.digest}", push=True).status_code == 200:
            return False
        r = self.request("POST", "blobs/uploads/", push=True)
        if r.status_code != 202:
            raise BundleError(f"registry {self.registry}: starting an upload answered HTTP {r.status_code}: "
                              f"{r.text[:200]}")
        loc = r.headers["Location"]
        loc = loc if loc.startswith("http") else self.base + loc
        # The upload URL carries its own query (upload state): append the digest, never replace the query.
        loc += ("&" if "?" in loc else "?") + "digest=" + blob.digest.replace(":", "%3A")
        r = self.request("PUT", loc, push=True, content=blob.data,
                         headers={"Content-Type": "application/octet-stream"})
        if r.status_code != 201:
            raise BundleError(f"registry {self.registry}: upload of {blob.digest} answered HTTP {r.status_code}: "
                              f"{r.text[:200]}")
        return True

    def push(self, bundle: Bundle, tag: str | None = None) -> str:
        for b in [bundle.config, *bundle.layers]:
            self.push_blob(b)
        for ref in [bundle.digest] + ([tag] if tag else []):
            r = self.request("PUT", f"manifests/{ref}", push=True, content=bundle.manifest,
                             headers={"Content-Type": OCI_MANIFEST})
            if r.status_code != 201:
                raise BundleError(f"registry {self.registry}: manifest PUT answered HTTP {r.status_code}: "
                                  f"{r.text[:300]}")
            served = r.headers.get("Docker-Content-Digest")
            if served and served != bundle.digest:
                raise BundleError(f"registry {self.registry} stored the bundle manifest as {served}, "
                                  f"expected {bundle.digest}")
        return f"{self.registry}/{self.path}@{bundle.digest}"

    def get_verified(self, kind: str, digest: str, max_bytes: int, accept: str | None = None) -> bytes:
        """GETs a manifest or blob by digest and checks the bytes hash to it (a registry cannot substitute)."""
        headers = {"Accept": accept} if accept else {}
        with self.http.stream("GET", f"{self.base}/v2/{self.path}/{kind}/{digest}",
                              headers={**headers, **self._auth}, follow_redirects=True) as r:
            if r.status_code == 401:
                r.close()
                self.request("HEAD", f"{kind}/{digest}", headers=headers)  # answers the challenge
                return self.get_verified(kind, digest, max_bytes, accept)
            if r.status_code == 404:
                raise BundleError(f"{self.registry}/{self.path}@{digest}: not found in the registry")
            if r.status_code != 200:
                raise BundleError(f"{self.registry}/{self.path}: GET {kind}/{digest} answered HTTP {r.status_code}")
            h, buf = hashlib.sha256(), bytearray()
            for chunk in r.iter_bytes():
                buf += chunk
                if len(buf) > max_bytes:
                    raise BundleError(f"{kind}/{digest} is larger than {max_bytes} bytes (ROLLWRIGHT_BUNDLE_MAX_BYTES)")
                h.update(chunk)
        if "sha256:" + h.hexdigest() != digest:
            raise BundleError(f"{self.registry}/{self.path}: {kind}/{digest} does not match its digest "
                              f"(got sha256:{h.hexdigest()})")
        return bytes(buf)


def parse_ref(ref: str) -> tuple[str, str]:
    """``registry/repo@sha256:…`` → (``registry/repo``, digest). Tags are refused: a bundle is named by content."""
    m = REF_RE.match(ref)
    if not m:
        raise BundleError(f"bundle reference {ref!r} must be <registry>/<repository>@sha256:<64 hex>")
    return f"{m['registry']}/{m['path']}", m["digest"]


def read_manifest(reg: Registry, digest: str, limits: Limits) -> dict[str, Any]:
    data = reg.get_verified("manifests", digest, 1024 * 1024, accept=OCI_MANIFEST)
    return check_manifest(data, f"{reg.registry}/{reg.path}@{digest}", limits)


def check_manifest(data: bytes, ref: str, limits: Limits) -> dict[str, Any]:
    """Parses a (digest-verified) bundle manifest and checks it is a Rollwright bundle within the limits."""
    m: dict[str, Any] = json.loads(data)
    if m.get("artifactType") != ARTIFACT_TYPE or (m.get("config") or {}).get("mediaType") != CONFIG_TYPE:
        raise BundleError(f"{ref} is not a Rollwright release bundle "
                          f"(artifactType {m.get('artifactType')!r})")
    total = sum(int(d.get("size", 0)) for d in m.get("layers", []))
    if total > limits.max_bytes:
        raise BundleError(f"bundle layers total {total} bytes, above ROLLWRIGHT_BUNDLE_MAX_BYTES={limits.max_bytes}")
    for d in [m["config"], *m.get("layers", [])]:
        if not DIGEST_RE.match(str(d.get("digest"))):
            raise BundleError(f"bundle descriptor has an invalid digest {d.get('digest')!r}")
    return m


def layer(manifest: dict[str, Any], media_type: str) -> dict[str, Any] | None:
    return next((d for d in manifest.get("layers", []) if d.get("mediaType") == media_type), None)


def inspect(ref: str) -> dict[str, Any]:
    """What ``rollwright bundle inspect`` prints: manifest, config and the file list of each layer."""
    limits = Limits.from_env()
    repo, digest = parse_ref(ref)
    with Registry(repo) as reg:
        m = read_manifest(reg, digest, limits)
        config = json.loads(reg.get_verified("blobs", m["config"]["digest"], 1024 * 1024))
        files: dict[str, list[str]] = {}
        for d in m["layers"]:
            data = reg.get_verified("blobs", d["digest"], limits.max_bytes)
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as t:
                files[d["mediaType"]] = [f"{x.name}{' -> ' + x.linkname if x.issym() else ''} ({x.size} B)"
                                         for x in t.getmembers()]
    return {"reference": ref, "manifest": m, "config": config, "files": files}


def is_safe_name(name: str) -> bool:
    return bool(_NAME_RE.match(name)) and ".." not in name.split("/")
