# payflow: one image for the API server (and its CLI: migrate, audit, demo).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
# The pinned runtime set first: this layer is reused until the pins change.
COPY requirements/runtime.txt requirements/runtime.txt
RUN pip install -r requirements/runtime.txt
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip install --no-deps . && rm -rf src

RUN useradd --create-home --uid 10001 payflow && mkdir -p /app/logs && chown payflow /app/logs
USER payflow

ENV LOG_DIR=/app/logs
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2).status == 200 else 1)"]
# `serve` applies pending migrations (under a lock) before it listens.
CMD ["payflow", "serve", "--host", "0.0.0.0", "--port", "8000"]
