# The worker image: pinned dependencies, the package, and the migrations (for the migrate one-shot).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY pyproject.toml README.md alembic.ini ./
COPY alembic ./alembic
COPY worker ./worker
# Editable, so that worker.db.migrations finds /app/alembic next to the package.
RUN pip install --no-deps -e . && useradd --system --uid 10001 worker
USER worker

CMD ["arq", "worker.main.WorkerSettings"]
