# syntax=docker/dockerfile:1
# The Swapline service. How to build, run and scale it: docs/DEPLOY.md.
#   docker build -t swapline .
#   docker run --rm --init -p 8000:8000 swapline                         # a quick try: embedded Valkey
#   docker run --rm --init -p 8000:8000 -e SWAPLINE_REDIS_URL=redis://HOST:6379/0 swapline
# The build context is an allowlist (.dockerignore).

# ---- build: the package and its dependencies, in a virtualenv the next stage copies whole ----
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# What `pip install .` reads: the project's metadata (pyproject.toml names README.md), the
# package, and the built snippet that service/static/ links to (plain, brotli, gzip).
COPY pyproject.toml README.md ./
COPY service ./service
COPY snippet/dist/ ./snippet/dist/
# Every dependency ships wheels: no compiler in the image. pip's cache lives in a build cache
# mount, so it speeds up rebuilds without ending up in a layer.
RUN --mount=type=cache,target=/root/.cache/pip pip install .

# ---- runtime: the virtualenv, the demo rules, an unprivileged user ----
FROM python:3.11-slim
# Logs go straight to stdout; the code is compiled already and the user could not write .pyc.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SWAPLINE_HOST=0.0.0.0 \
    SWAPLINE_PORT=8000 \
    SWAPLINE_RULES_DIR=/app/rules \
    SWAPLINE_DATA_DIR=/app/data
# SWAPLINE_REDIS_URL is unset on purpose: the image starts an embedded Valkey for a quick
# try; production sets it to an external Redis/Valkey (and SWAPLINE_GEOIP_DB to a current
# GeoLite2-City.mmdb mounted into the container). See docs/DEPLOY.md.
RUN groupadd --system --gid 10001 swapline \
    && useradd --system --uid 10001 --gid swapline --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin swapline \
    && mkdir -p /app/data \
    && chown swapline:swapline /app/data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The demo site, for a quick try; production mounts its own rules over /app/rules.
COPY rules/*.yaml ./rules/
COPY service/schema.json ./rules/schema.json
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
# Liveness, not readiness: /healthz answers while the store is down (decisions degrade, events
# spool), so a Redis outage does not get every replica restarted. Load balancers use /readyz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % (os.environ.get('SWAPLINE_PORT') or 8000), timeout=3)"]
# SIGINT, uvicorn's own way to stop: a graceful shutdown, then `swapline serve` stops its
# embedded Valkey (it treats SIGTERM the same, for runtimes that send that instead).
STOPSIGNAL SIGINT
CMD ["swapline", "serve"]
