# cfgstore gateway image: `cfgctl serve` on port 3000 (see deploy/README.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PATH=/app/.venv/bin:$PATH

# uv from PyPI, pinned to the version the lock file was written with.
RUN pip install --no-cache-dir "uv==0.13.9"

WORKDIR /app

# Dependencies first (cached while only the sources change): the lock file and every
# workspace member's pyproject.toml.
COPY pyproject.toml uv.lock README.md ./
COPY gateway/pyproject.toml gateway/pyproject.toml
COPY plugins/file_backend/pyproject.toml plugins/file_backend/pyproject.toml
COPY plugins/memory_fallback/pyproject.toml plugins/memory_fallback/pyproject.toml
COPY plugins/redis_backend/pyproject.toml plugins/redis_backend/pyproject.toml
# --all-packages: the gateway and the backends (workspace members); --no-dev: the default
# `dev` group (pytest, ruff, mypy) is left out.
RUN uv sync --all-packages --frozen --no-dev --no-install-workspace

# The sources, then the workspace packages themselves (not editable: /app/.venv holds them).
COPY cfgstore cfgstore
COPY gateway gateway
COPY plugins plugins
RUN uv sync --all-packages --frozen --no-dev --no-editable

# A non-root user owns the configs folder and the state directory (named volumes start
# with the image's ownership).
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin cfgstore \
    && mkdir -p /app/configs /app/state \
    && chown cfgstore:cfgstore /app/configs /app/state
USER cfgstore

VOLUME ["/app/configs", "/app/state"]
EXPOSE 3000

# No curl in slim: Python asks /health (public; any non-2xx or no answer is unhealthy).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:3000/health', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["cfgctl"]
CMD ["serve", "--configs", "/app/configs", "--state-dir", "/app/state"]
