"""A real Airflow serves the pipeline DAG and its params schema, and runs what the UI triggers."""

from __future__ import annotations

import pytest

from devtools.local_stack import AirflowClient
from include.project import PIPELINE_DAG_ID
from tests.support.stack_sockets import listening

pytestmark = pytest.mark.slow


def test_dag_is_listed_with_its_params_schema(airflow_client: AirflowClient) -> None:
    dags = airflow_client.request("GET", "/dags?dag_id_pattern=object_detection")["dags"]
    assert [d["dag_id"] for d in dags] == [PIPELINE_DAG_ID]
    assert airflow_client.request("GET", "/importErrors")["total_entries"] == 0
    params = airflow_client.request("GET", f"/dags/{PIPELINE_DAG_ID}/details")["params"]
    assert params["backend"]["schema"]["enum"] == ["local", "sagemaker"]
    assert params["epochs"]["schema"]["type"] == ["null", "integer"]
    assert params["tune"]["schema"]["type"] == "boolean"


def test_trigger_rejects_a_conf_outside_the_schema(airflow_client: AirflowClient) -> None:
    with pytest.raises(RuntimeError, match="400"):
        airflow_client.trigger(PIPELINE_DAG_ID, {"backend": "azure"})


def test_bad_configuration_fails_the_run_at_its_start_naming_the_key(airflow_client: AirflowClient) -> None:
    run_id = airflow_client.trigger(PIPELINE_DAG_ID, {"backend": "sagemaker"})
    run = airflow_client.wait_for_run(PIPELINE_DAG_ID, run_id, timeout_s=600, poll_s=3)
    assert run["state"] == "failed"
    states = airflow_client.task_states(PIPELINE_DAG_ID, run_id)
    assert states["resolve_config"] == "failed"
    assert states["ingest"] == "upstream_failed"
    log = airflow_client.task_log(PIPELINE_DAG_ID, run_id, "resolve_config")
    assert "sagemaker.role_arn" in log and "IAM execution role ARN" in log


def test_every_server_the_stack_started_listens_on_loopback_only(airflow_stack: dict) -> None:
    servers = listening(airflow_stack["components"].values())
    assert {address for _, address, _ in servers} == {"127.0.0.1"}, servers
    ports = {port for _, _, port in servers}
    assert {int(airflow_stack["url"].rsplit(":", 1)[1]), int(airflow_stack["log_server"].rsplit(":", 1)[1])} <= ports
