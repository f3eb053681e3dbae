# The pipeline's Airflow image, built from the same uv.lock as the local install.
# AWS credentials are never baked in: pass them at run time (environment or an Airflow connection).
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 libquadmath0 curl procps \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 50000 --gid 0 --create-home --home-dir /home/airflow airflow

COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv

ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    AIRFLOW_HOME=/opt/airflow \
    PYTHONPATH=/opt/airflow \
    PATH=/opt/venv/bin:$PATH

WORKDIR /opt/airflow
# Dependencies first (cached layer): exactly the lock, no dev tools, plus the PostgreSQL driver.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --group distributed --no-install-project

# The project itself; dags/, plugins/ and include/ are also mounted by docker-compose.yaml.
COPY include ./include
COPY dags ./dags
COPY plugins ./plugins
RUN uv sync --frozen --no-dev --group distributed \
 && mkdir -p /opt/airflow/logs /opt/airflow/data \
 && chown -R 50000:0 /opt/airflow

USER 50000
