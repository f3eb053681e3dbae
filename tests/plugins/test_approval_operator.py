"""The approval operator's decisions, recorded on a real tracking server: an automatic approval, and a request
nobody answered in time (Airflow answers it with the default, Reject), which skips the deploy after recording why.

The wait itself (``awaiting_input``, a person's answer through the REST API) runs through a real scheduler in
``tests/e2e/test_local_pipeline_run.py``."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
from airflow.sdk.exceptions import DownstreamTasksSkipped
from detection_airflow.approval import APPROVAL_KEY, DECISION_KEY, PromotionApprovalOperator

from include.configs import load_config
from include.run_layout import RunLayout
from include.stages import RunContext
from include.tracking.registry import CHAMPION, Registry
from tests.support.tracking_fixtures import model_run


def _task(tracking_ref, tmp_path, approval: str) -> tuple[PromotionApprovalOperator, dict[str, Any], dict]:
    """The operator in a two-task DAG (approve >> deploy), and a context whose XComs hold the run and the decision."""
    ref = tracking_ref
    run_id, source = model_run(ref, tmp_path, "challenger")
    version = Registry(ref.uri, ref.registered_model).register(source, run_id, {"map": 0.6, "map_split": "test"})
    cfg = load_config(
        overrides={"tracking": {"uri": ref.uri}, "promotion": {"approval": approval, "approval_timeout_minutes": 30}},
        environ={},
    )
    run = RunContext(
        cfg,
        RunLayout.create(str(tmp_path), ref.dag_id, ref.airflow_run_id),
        ref.dag_id,
        ref.airflow_run_id,
        tracking=ref,
    ).as_dict()
    decision = {
        "version": version.version,
        "registered_model": ref.registered_model,
        "reason": "mAP 0.60 wins",
        "deploy": True,
        "model_package_arn": None,
    }
    with DAG("approval_test", schedule=None, start_date=datetime(2026, 1, 1)):
        approve = PromotionApprovalOperator(task_id="approve")
        approve >> EmptyOperator(task_id="deploy")
    xcom = {("resolve_config", "return_value"): run, ("promotion_gate", DECISION_KEY): decision}
    pushed: dict[str, Any] = {}
    ti = SimpleNamespace(
        dag_id=ref.dag_id,
        run_id=ref.airflow_run_id,
        task_id="approve",
        try_number=1,
        map_index=-1,
        xcom_pull=lambda task_ids, key="return_value": xcom[(task_ids, key)],
        xcom_push=lambda key, value: pushed.__setitem__(key, value),
    )
    return approve, {"ti": ti, "task": approve}, pushed


def test_auto_approval_makes_the_winner_champion_without_asking(tracking_ref, tmp_path, mlflow_client) -> None:
    approve, context, pushed = _task(tracking_ref, tmp_path, "auto")
    result = approve.execute(context)
    assert result == pushed[APPROVAL_KEY]
    assert (result["approved"], result["by"], result["version"]) == (True, "auto", 1)
    assert Registry(tracking_ref.uri, tracking_ref.registered_model).aliases() == {CHAMPION: 1}
    tags = mlflow_client.get_run(tracking_ref.run_id).data.tags
    assert (tags["approval.decision"], tags["approval.by"]) == ("approved", "auto")


def test_an_unanswered_request_is_rejected_at_its_timeout_and_the_deploy_skipped(
    tracking_ref, tmp_path, mlflow_client
) -> None:
    approve, context, pushed = _task(tracking_ref, tmp_path, "manual")
    timed_out = {
        "chosen_options": ["Reject"],
        "params_input": {},
        "responded_at": datetime.now(UTC),
        "responded_by_user": None,
        "timedout": True,
    }
    with pytest.raises(DownstreamTasksSkipped) as skipped:
        approve.execute_complete(context, timed_out)
    assert skipped.value.tasks == ["deploy"]
    assert pushed[APPROVAL_KEY] == {
        "approved": False,
        "version": 1,
        "by": "timeout",
        "reason": "no answer within 30 minutes",
        "model_package_arn": None,
        "replaced": None,
    }
    version = mlflow_client.get_model_version(tracking_ref.registered_model, "1")
    assert (version.tags["detection.approval"], version.tags["detection.approved_by"]) == ("rejected", "timeout")
    assert Registry(tracking_ref.uri, tracking_ref.registered_model).aliases() == {}
