# mcp_sentinel as a container: `docker build -t mcp-sentinel .` (docker-compose.yml builds it).
# Two stages: the builder installs the locked dependencies with uv (the same `uv sync --frozen`
# CI runs, without the dev group); the final stage gets only the virtualenv, the prompts and a
# default config, runs as a non-root user and has no uv, compiler or build cache.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

# uv from PyPI: the ghcr.io/astral-sh/uv image cannot be pulled here. Pinned to the version
# that wrote uv.lock.
ARG UV_VERSION=0.13.9
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install "uv==${UV_VERSION}"

WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
# Then the project itself, installed as a package (not editable: /src stays behind).
COPY mcp_sentinel ./mcp_sentinel
RUN uv sync --frozen --no-dev --no-editable

# ------------------------------------------------------------------------------------ final
FROM ${PYTHON_IMAGE}

# A fixed UID/GID so volume ownership is predictable; no login shell, no home directory files.
RUN groupadd --system --gid 10001 sentinel \
 && useradd --system --uid 10001 --gid sentinel --no-create-home \
        --home-dir /var/lib/sentinel --shell /usr/sbin/nologin sentinel \
 && install -d -o sentinel -g sentinel -m 0750 /var/lib/sentinel

# The virtualenv's interpreter links to the base image's python at the same path.
COPY --from=builder /app/.venv /app/.venv
# Prompts next to the config: the config's relative prompt paths resolve against its directory.
COPY prompts /etc/sentinel/prompts
COPY deploy/sentinel/config.yaml /etc/sentinel/config.yaml

# SENTINEL_CONFIG serves the commands run without --config (`docker compose exec sentinel
# sentinel check`, `... sentinel audit verify`); CMD names the same file explicitly.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SENTINEL_CONFIG=/etc/sentinel/config.yaml

USER sentinel
WORKDIR /var/lib/sentinel
VOLUME ["/var/lib/sentinel"]
EXPOSE 9095

# python, not curl: the slim image has no curl, and adding it only for this would grow the image.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9095/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["sentinel"]
CMD ["run", "--config", "/etc/sentinel/config.yaml"]
