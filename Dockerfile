# One image for every driftlake Python service: model-server, analytics, dask-scheduler and
# dask-worker (same Polars on client and workers, as frames pickle through
# DataFrame.serialize). Build: docker compose build
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# uv from PyPI, pinned (the version the project is developed with).
RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /app

# Dependencies first (cached while only the code changes), exactly as locked, no dev group.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

# Then the project itself (editable: code under /app, where reference.parquet also lives).
COPY README.md reference.parquet ./
COPY ingest ./ingest
COPY serving ./serving
COPY analytics ./analytics
COPY run.py ./
RUN uv sync --frozen --no-dev

# Non-root. /warehouse is created here so the named volume mounted on it starts owned by
# this user (Docker copies the image directory's ownership into an empty named volume).
RUN useradd --system --uid 10001 --create-home --home-dir /home/driftlake driftlake \
    && mkdir -p /warehouse \
    && chown driftlake:driftlake /warehouse
USER driftlake

ENV DRIFTLAKE_WAREHOUSE=/warehouse
EXPOSE 8000 8786 8787
CMD ["python", "-m", "serving", "--host", "0.0.0.0", "--port", "8000"]
