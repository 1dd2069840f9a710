# syntax=docker/dockerfile:1
# The gateway as the platform deploys it: one container named api-gateway on port 3000, its
# admin listener on 9901 (loopback unless ADMIN_HOST says otherwise; README "Deployment").
#
# Base images are pinned to an exact Python and Debian release, build and run stages alike (the
# compiled request path is built against the same interpreter it runs on). To pin the digest as
# well, resolve it once where a registry is reachable and append it to both FROM lines:
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm   # -> Digest: sha256:...
#   FROM python:3.11.14-slim-bookworm@sha256:<digest>
# Needs BuildKit (the default builder since Docker 23) for the RUN --mount lines below.

# ---- Build stage: wheels for everything the image runs (with the C compiler and the headers,
# which stay here): the pinned dependencies first, then the gateway itself, whose build compiles
# the request path with mypyc (README "Compiled request path").
FROM python:3.11.14-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /build

# Dependency layer: only the two files that decide it, so a source change reuses it.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && pip wheel --wheel-dir /wheels/deps -c constraints.txt -r requirements.txt \
    && cp requirements.txt constraints.txt /wheels/deps/

# Sources: the gateway's wheel, built (and compiled) from them alone. setup.py tags it for this
# platform and puts the compiled build in it; the build backend's own requirements are pinned
# by the same constraints.
COPY README.md setup.py MANIFEST.in ./
COPY tools ./tools
COPY src ./src
RUN PIP_CONSTRAINT=constraints.txt pip wheel --no-deps --wheel-dir /wheels/app . \
    && ls /wheels/app/*-cp311-*.whl

# ---- Run stage: the slim image, wheels installed, nothing built here.
FROM python:3.11.14-slim-bookworm

# Bytecode off: the root file system may be read-only (pip precompiles at install time).
# TMPDIR is the only place the gateway writes: the supervisor's private directory (metrics
# snapshots, worker state, the command journal, reload.json, the keeper's socket).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    TMPDIR=/tmp \
    PORT=3000

# A numeric user and group, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin gateway

# Dependencies first (the same wheels whatever the sources), then the gateway's own wheel. The
# wheels are mounted from the build stage, never copied: no layer keeps them.
RUN --mount=type=bind,from=build,source=/wheels/deps,target=/wheels/deps \
    pip install --no-index --find-links /wheels/deps \
        -c /wheels/deps/constraints.txt -r /wheels/deps/requirements.txt
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels/deps /wheels/app/*.whl \
    && pip check

WORKDIR /app
# The only writable path the gateway needs. Prefer a tmpfs (`docker run --read-only --tmpfs
# /tmp`, or an emptyDir in Kubernetes: deploy/k8s/deployment.yaml); the volume makes plain
# `docker run --read-only` work too.
VOLUME ["/tmp"]

USER 10001:10001
EXPOSE 3000 9901
STOPSIGNAL SIGTERM

# /live answers while the event loop runs; the slim image has no curl, Python does the probe.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '3000')}/live\", timeout=2)"]

# Secrets come from files mounted by the orchestrator (JWT_SECRET_FILE, ADMIN_TOKEN_FILE,
# REDIS_URL_FILE, ...), never from the image. The supervisor is PID 1 and forwards SIGTERM.
CMD ["api-gateway", "serve"]
