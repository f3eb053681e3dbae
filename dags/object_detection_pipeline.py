"""Object detection, data set to served model and back down.

ingest -> bounding-box quality gate -> .lst + RecordIO (sharded, flip augmentation) ->
train (or tune) -> evaluate -> promotion gate -> deploy -> smoke test -> teardown.

The same graph runs on two backends, picked by the ``backend`` param (or the configuration):
``local`` executes every SageMaker request on this machine (MXNet/GluonCV SSD, a local HTTP
endpoint); ``sagemaker`` sends the same requests through the Amazon provider's operators.
Only URIs and small summaries travel through XCom; the stages live in ``include/``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, TriggerRule, dag, task

DAG_ID = "object_detection_pipeline"

#: A new labelled data set or Ground Truth manifest landing; its event's ``extra`` may name
#: ``dataset_source`` and ``dataset_format`` for the run.
LABELLED_DATASET = Asset(name="labelled_dataset", uri="detection://labelled-dataset")

_cron = os.environ.get("DETECTION_SCHEDULE_CRON")
SCHEDULE = (
    AssetOrTimeSchedule(timetable=CronTriggerTimetable(_cron, timezone="UTC"), assets=LABELLED_DATASET)
    if _cron
    else LABELLED_DATASET
)

PARAMS = {
    "backend": Param(
        "local", type="string", enum=["local", "sagemaker"], title="Backend",
        description="local: train and serve on this machine. sagemaker: send the requests to AWS.",
    ),
    "dataset_source": Param(
        "sample", type="string", title="Data set source",
        description="'sample' (generated), a local path, file:// or s3:// URI of the data set root or manifest.",
    ),
    "dataset_format": Param(
        "cub", type="string", enum=["cub", "voc", "groundtruth", "imagejson"], title="Data set format",
    ),
    "classes": Param(
        [], type="array", items={"type": "string"}, title="Class subset",
        description="Class ids or names to keep (empty: all), remapped to 0..N-1.",
    ),
    "epochs": Param(
        None, type=["null", "integer"], minimum=1, title="Epochs",
        description="Training epochs (empty: the profile's value).",
    ),
    "tune": Param(False, type="boolean", title="Tune", description="Run a hyperparameter tuning job first."),
    "deploy": Param(True, type="boolean", title="Deploy", description="Deploy the model if the gate promotes it."),
    "keep_endpoint_minutes": Param(
        0, type="integer", minimum=0, maximum=10080, title="Keep endpoint (minutes)",
        description="0: tear the endpoint down at the end of the run; N: leave it up N minutes for the sweeper.",
    ),
    "quality_policy": Param(
        "fail", type="string", enum=["fail", "drop"], title="Quality policy",
        description="fail: stop on bad boxes. drop: quarantine them and go on.",
    ),
}


def _ctx(run: dict):
    """Rebuild the run context that ``resolve_config`` returned."""
    from airflow.sdk import get_current_context

    from include.stages import RunContext

    return RunContext.from_dict(run, try_number=get_current_context()["ti"].try_number)


@dag(
    dag_id=DAG_ID,
    description="Labelled images to a served SSD detector and back down, on SageMaker or locally.",
    doc_md=__doc__,
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["object-detection", "sagemaker", "mxnet", "mlops"],
    default_args={"owner": "mlops", "retries": 1, "retry_delay": timedelta(seconds=30)},
    params=PARAMS,
)
def object_detection_pipeline():
    @task(retries=0)
    def resolve_config(**context) -> dict:
        """Validate the configuration with the params applied; a bad value fails here."""
        from include.stages import resolve

        params = dict(context["params"])
        for event_list in (context.get("triggering_asset_events") or {}).values():
            for event in event_list:
                params.update({k: v for k, v in (event.extra or {}).items() if k in PARAMS})
        ctx = resolve(params, context["dag"].dag_id, context["run_id"])
        return ctx.as_dict()

    @task
    def ingest(run: dict) -> dict:
        from include.stages import ingest as stage

        return stage(_ctx(run))

    @task
    def validate(run: dict, ingested: dict) -> dict:
        from include.stages import validate as stage

        return stage(_ctx(run))

    @task
    def plan_recordio(run: dict, validated: dict) -> list[dict]:
        from include.stages import plan_recordio as stage

        return stage(_ctx(run))

    @task(map_index_template="{{ task.op_kwargs['spec']['shard'] }}")
    def build_recordio_shard(spec: dict) -> dict:
        from include.stages import build_recordio_shard as stage

        return stage(spec)

    @task
    def merge_recordio(run: dict, shards: list[dict]) -> dict:
        from include.stages import merge_recordio as stage

        return stage(_ctx(run), shards)

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def watcher(**context) -> None:
        """Fail the run when any task failed, even though teardown tasks succeeded."""
        failed = [
            ti.task_id for ti in context["dag_run"].get_task_instances(state=["failed", "upstream_failed"])
        ] if hasattr(context["dag_run"], "get_task_instances") else []
        if failed:
            raise RuntimeError(f"tasks failed in this run: {', '.join(failed)}")

    run = resolve_config()
    ingested = ingest(run)
    validated = validate(run, ingested)
    specs = plan_recordio(run, validated)
    shards = build_recordio_shard.expand(spec=specs)
    merge_recordio(run, shards)


object_detection_pipeline()
