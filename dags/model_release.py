"""Release a model to the standing production endpoint, or roll it back; triggered by hand.

``rollout`` puts the registry's ``champion`` (or the approved ``model_version``) on the endpoint
``endpoint_name``: created when absent, otherwise replaced in place. Locally the new model starts
beside the old one, must pass a smoke test, then takes over the endpoint's address without a
request failing; on SageMaker the endpoint is updated blue/green and rolls back by itself when its
error or latency alarm fires (the task then fails with SageMaker's reason). ``rollback`` puts back
the model the endpoint served before, the same way. ``verify`` then calls the endpoint through
SageMaker Runtime's InvokeEndpoint API, as applications do.

Every release is kept in the endpoint's history (``detection-pipeline production``); this DAG's
runs say who released what and when. The training pipeline's own endpoint is per run and is torn
down; this one stays until it is torn down by name (``detection-pipeline teardown --endpoint NAME``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

PARAMS = {
    "action": Param(
        "rollout", type="string", enum=["rollout", "rollback"], title="Action",
        description="rollout: release a model. rollback: put back what the endpoint served before.",
    ),
    "model_version": Param(
        None, type=["null", "integer"], minimum=1, title="Model version",
        description="An approved version of the registered model (empty: the champion). Ignored by rollback.",
    ),
    "endpoint_name": Param(
        None, type=["null", "string"], pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", title="Endpoint name",
        description="The production endpoint (empty: deploy.production.endpoint_name, detector-prod).",
    ),
    "backend": Param(
        "local", type="string", enum=["local", "sagemaker"], title="Backend",
        description="local: this machine's endpoint. sagemaker: a SageMaker endpoint.",
    ),
    "smoke_images": Param(
        None, type=["null", "string"], title="Smoke-test images",
        description="A folder of JPEG/PNG images the new model must answer first (empty: the model's own run's).",
    ),
    "reason": Param(
        "released from the model_release DAG", type="string", minLength=1, title="Reason",
        description="Why; kept in the endpoint's history (and the registry's on a rollback).",
    ),
}  # fmt: skip


@dag(
    dag_id="model_release",
    description="Release the champion model to the production endpoint without downtime, or roll it back.",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["object-detection", "release", "production"],
    default_args={"owner": "mlops", "retries": 1, "retry_delay": timedelta(minutes=1)},
    params=PARAMS,
)
def model_release():
    @task(retries=0)  # a second try would release again (and a second rollback would toggle back)
    def release(**context) -> dict:
        """Roll out (or back) on the production endpoint; fails, with the old model still serving, when the new one
        fails its smoke test or SageMaker rolls the update back."""
        from include.stages import release_endpoint

        params = dict(context["params"])
        by = f"airflow:{context['dag_run'].run_id}"
        return release_endpoint(params, by=by, reason=params["reason"])

    @task(retries=2)
    def verify(released: dict, **context) -> dict:
        """Call the endpoint through SageMaker Runtime's InvokeEndpoint and check the answer."""
        from include.stages import verify_release

        return verify_release(dict(context["params"]), released)

    verify(release())


model_release()
