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
# Editable, so that worker.db.migrations finds /app/alembic next to the package. The package data
# (runtime/*.lua, repositories/sql/*.sql: pyproject.toml's package-data) is read where COPY put it;
# the check fails the build if a data file the worker loads at start-up is missing.
RUN pip install --no-deps -e . && useradd --system --uid 10001 worker \
    && python -c "import importlib.resources as r; assert r.files('worker.runtime').joinpath('claim.lua').is_file()"
USER worker

CMD ["arq", "worker.main.WorkerSettings"]
