"""Object detection, data set to served model and back down.

ingest -> bounding-box quality gate -> .lst + RecordIO (sharded, flip augmentation) ->
train (or tune) -> evaluate -> export (when asked) -> promotion gate -> approve -> deploy -> smoke test -> teardown.

Every run is tracked in MLflow (``tracking.uri``): the run's tasks link to their MLflow runs and
reports. Each trained model becomes a version of the registered model; one that beats the
``champion`` is approved automatically or, with ``approval=manual``, by a person here
("Required actions") before it becomes champion and is deployed.

The same graph runs on two backends, picked by the ``backend`` param (or the configuration):
``local`` executes every SageMaker request on this machine (MXNet/GluonCV SSD, a local HTTP
endpoint); ``sagemaker`` sends the same requests through the Amazon provider's operators.
Only URIs and small summaries travel through XCom; the stages live in ``include/``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, TriggerRule, dag, task
from detection_airflow.approval import DECISION_KEY, PromotionApprovalOperator
from detection_airflow.assets import LABELLED_DATASET
from detection_airflow.context import run_context
from detection_airflow.deployment import DetectionEndpointOperator
from detection_airflow.jobs import DetectionTrainingOperator, DetectionTuningOperator
from detection_airflow.shards import DetectionShardOperator

from include.project import task_queues

DAG_ID = "object_detection_pipeline"
#: The backend is decided per run by ``resolve_config`` (param, else configuration).
BACKEND = "{{ ti.xcom_pull(task_ids='resolve_config')['config']['backend'] }}"

#: Celery queues (``DETECTION_QUEUE_CPU`` / ``DETECTION_QUEUE_TRAINING``): data work on ``cpu``, training and
#: the local endpoint's life on ``training``, the rest on Airflow's default queue.
QUEUES = task_queues()

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
        description="'sample' (generated), a file:// or s3:// URI, or a path of the data set root or manifest; "
        "a relative path is relative to the project root (e.g. ../shared/datasets/bccd/BCCD).",
    ),
    "dataset_format": Param(
        "auto", type="string", title="Data set format",
        enum=["auto", "cub", "voc", "groundtruth", "imagejson", "coco", "yolo", "labelstudio", "cvat", "jumpstart"],
        description="auto: detected from the layout (the sample: cub; an ambiguous or unknown layout stops ingest, "
        "saying what it found). labelstudio: Label Studio's JSON export; cvat: CVAT for images 1.1; "
        "yolo: Ultralytics data.yaml.",
    ),
    "classes": Param(
        None, type=["null", "array"], items={"type": "string"}, title="Class subset",
        description="Class ids or names to keep, one per line, remapped to 0..N-1 (empty: all classes).",
    ),
    "epochs": Param(
        None, type=["null", "integer"], minimum=1, title="Epochs",
        description="Training epochs (empty: the profile's value).",
    ),
    "tune": Param(False, type="boolean", title="Tune", description="Run a hyperparameter tuning job first."),
    "deploy": Param(True, type="boolean", title="Deploy", description="Deploy the model if the gate promotes it."),
    "promotion_threshold": Param(
        None, type=["null", "number"], minimum=0, maximum=1, title="Promotion threshold",
        description="Test mAP@0.5 a model needs to be deployed (empty: evaluation.promotion_threshold, 0.5).",
    ),
    "keep_endpoint_minutes": Param(
        None, type=["null", "integer"], minimum=0, maximum=10080, title="Keep endpoint (minutes)",
        description="0: tear the endpoint down at the end of the run; N: leave it up N minutes for the sweeper "
        "(empty: deploy.keep_endpoint_minutes, 0).",
    ),
    "delete_intermediate_files": Param(
        False, type="boolean", title="Delete intermediate files",
        description="After a passed smoke test, teardown deletes the run's data set, ingest, quality and RecordIO "
        "folders (training and evaluation stay).",
    ),
    "quality_policy": Param(
        "fail", type="string", enum=["fail", "drop"], title="Quality policy",
        description="fail: stop on bad boxes. drop: quarantine them and go on.",
    ),
    "approval": Param(
        "auto", type="string", enum=["auto", "manual"], title="Approval",
        description="auto: a model that beats the champion replaces it. manual: a person approves it here first "
        "(the run waits; unanswered, it is rejected after the approval timeout).",
    ),
    "approval_timeout_minutes": Param(
        None, type=["null", "number"], exclusiveMinimum=0, title="Approval timeout (minutes)",
        description="With manual approval: minutes to wait for an answer, then the model counts as rejected "
        "(empty: promotion.approval_timeout_minutes, 1440).",
    ),
    "export": Param(
        False, type="boolean", title="Export",
        description="After evaluation, export the model: ONNX checked against MXNet on held-out images (local), "
        "a SageMaker Neo compilation (sagemaker); recorded in export/export.json and the report.",
    ),
    "use_cache": Param(
        True, type="boolean", title="Use the step cache",
        description="Reuse the RecordIO build, training and evaluation of an earlier run whose inputs were the "
        "same (content, options, code). Off: run every step fresh (the outputs are still recorded for later runs).",
    ),
    "deploy_runtime": Param(
        "mxnet", type="string", enum=["mxnet", "onnxruntime"], title="Serving runtime",
        description="mxnet serves model.tar.gz; onnxruntime serves the ONNX export (local backend, needs Export).",
    ),
}


def _ctx(run: dict):
    """Rebuild the run context that ``resolve_config`` returned."""
    from airflow.sdk import get_current_context

    from include.stages import RunContext

    return RunContext.from_dict(run, try_number=get_current_context()["ti"].try_number)


def _airflow_url(context) -> str | None:
    """This run's page in the Airflow UI (linked from its MLflow run)."""
    from urllib.parse import quote

    from airflow.providers.common.compat.sdk import conf

    base = conf.get("api", "base_url", fallback=None)
    return f"{base.rstrip('/')}/dags/{context['dag'].dag_id}/runs/{quote(context['run_id'], safe='')}" if base else None


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
        from detection_airflow.context import run_params

        from include.stages import resolve

        params = run_params(context, PARAMS)
        ctx = resolve(params, context["dag"].dag_id, context["run_id"], airflow_url=_airflow_url(context))
        return ctx.as_dict()

    @task(queue=QUEUES.cpu)
    def ingest(run: dict) -> dict:
        from include.stages import ingest as stage

        return stage(_ctx(run))

    @task(queue=QUEUES.cpu)
    def validate(run: dict, ingested: dict) -> dict:
        """The bounding-box quality gate; its checks and the data set are tracked (links: MLflow run, quality.html)."""
        from include.stages import validate as stage

        return stage(_ctx(run))

    @task(queue=QUEUES.cpu)
    def plan_recordio(run: dict, validated: dict) -> list[dict]:
        from include.stages import plan_recordio as stage

        return stage(_ctx(run))

    @task(queue=QUEUES.cpu)
    def merge_recordio(run: dict, shards: list[dict]) -> dict:
        from include.stages import merge_recordio as stage

        return stage(_ctx(run), shards)

    @task.branch
    def choose_training(run: dict) -> str:
        """Train directly, or tune first and hand on the best trial (the ``tune`` param)."""
        return "tune" if run["config"]["training"]["tune"] else "train"

    train = DetectionTrainingOperator(
        task_id="train",
        queue=QUEUES.training,
        backend=BACKEND,
        request_builder=_train_request,
        cache_builder=_train_cache,
        result_handler=_track_training,
        deferrable=True,
        check_interval=60,
    )
    tune = DetectionTuningOperator(
        task_id="tune",
        queue=QUEUES.training,
        backend=BACKEND,
        request_builder=_tune_request,
        cache_builder=_tune_cache,
        result_handler=_track_training,
        deferrable=True,
        check_interval=60,
    )

    @task(queue=QUEUES.cpu, trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def evaluate(run: dict, **context) -> dict:
        """mAP, per-class AP, COCO mAP, charts, sample detections and report.html."""
        from include.stages import evaluate as stage

        result = stage(_ctx(run), _trained(context))
        print(f"report.html: {result['report_uri']}")
        return result

    @task.run_if(lambda context: run_context(context).config.export.enabled, skip_message="export is off")
    @task(queue=QUEUES.cpu)
    def export(run: dict, evaluation: dict) -> dict:
        """ONNX (parity with MXNet proven on held-out images) and/or Neo, as export.formats asks."""
        from include.stages import export as stage

        return stage(_ctx(run), evaluation)

    @task.branch(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def promotion_gate(run: dict, evaluation: dict, **context) -> list[str]:
        """Register the model; ask for its approval only when mAP clears the threshold and the champion's."""
        from include.stages import promotion

        decision = promotion(_ctx(run), evaluation, _trained(context))
        context["ti"].xcom_push(key=DECISION_KEY, value=decision)
        if not decision["promote"]:
            print(f"version {decision['version']} registered; not promoted: {decision['reason']}")
            return []
        return ["approve"]

    approve = PromotionApprovalOperator(task_id="approve")

    deploy = DetectionEndpointOperator(
        task_id="deploy",
        queue=QUEUES.training,
        backend=BACKEND,
        request_builder=_deploy_request,
        result_handler=_track_deployment,
        deferrable=True,
        check_interval=30,
    )

    @task(queue=QUEUES.training, retries=2)
    def smoke_test(run: dict, deployed: dict) -> dict:
        """Send validation images to the endpoint; check the response schema and that boxes come back."""
        from include.stages import smoke_test as stage

        return stage(_ctx(run), deployed)

    @task(queue=QUEUES.training, trigger_rule=TriggerRule.ALL_DONE_SETUP_SUCCESS)
    def teardown(run: dict, **context) -> dict:
        """Remove the run's endpoint, config and model, stop its jobs; keep or delete more as asked."""
        from include.stages import teardown as stage

        return stage(_ctx(run), smoke_passed=bool(context["ti"].xcom_pull(task_ids="smoke_test")))

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
    def watcher() -> None:
        """Fail the run whenever a task failed, even though the teardown succeeded."""
        raise RuntimeError("a task of this run failed; see the failed task's log (teardown ran regardless)")

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def close_tracking(run: dict, **context) -> dict:
        """End the run's MLflow run: FINISHED, or FAILED when a task failed (and the stage runs left open)."""
        from include.stages import close_tracking as stage

        ti = context["ti"]
        failed = ti.get_ti_count(dag_id=ti.dag_id, run_ids=[ti.run_id], states=["failed", "upstream_failed"])
        return stage(_ctx(run), failed=failed > 0)

    run = resolve_config()
    ingested = ingest(run)
    validated = validate(run, ingested)
    specs = plan_recordio(run, validated)
    # built in the task, or as a SageMaker Processing job each (sagemaker.shard_processing)
    shards = DetectionShardOperator.partial(
        task_id="build_recordio_shard",
        queue=QUEUES.cpu,
        backend=BACKEND,
        request_builder=_shard_request,
        deferrable=True,
        check_interval=30,
        map_index_template="{{ task.spec['shard'] }}",
    ).expand(spec=specs)
    data = merge_recordio(run, shards.output)
    choice = choose_training(run)
    data >> choice >> [train, tune]
    evaluation = evaluate(run)
    [train, tune] >> evaluation
    exported = export(run, evaluation)
    gate = promotion_gate(run, evaluation)
    exported >> gate >> approve >> deploy
    smoke = smoke_test(run, deploy.output)
    down = teardown(run)
    smoke >> down
    down.as_teardown(setups=deploy)
    # The deploy setup itself is watched through smoke_test (upstream_failed counts as failed).
    tasks = [run, ingested, validated, specs, shards, data, choice, train, tune, evaluation, exported, gate, approve,
             smoke, down]
    tasks >> watcher()
    # Not directly downstream of the gate or the approval: a branch (and a rejection) skips its direct downstream
    # tasks whatever their trigger rule. It still waits for both, through smoke_test and teardown.
    [t for t in tasks if t not in (gate, approve)] >> close_tracking(run)


def _trained(context) -> dict:
    """The result of whichever of ``train`` / ``tune`` ran."""
    results = context["ti"].xcom_pull(task_ids=["train", "tune"])
    return next(r for r in results if r)


def _train_request(context, run_identity) -> dict:
    from include.stages import training_request

    return training_request(run_context(context), run_identity, tune=False)


def _tune_request(context, run_identity) -> dict:
    from include.stages import training_request

    return training_request(run_context(context), run_identity, tune=True)


def _track_training(context, result: dict) -> dict:
    from include.stages import track_training

    return track_training(run_context(context), result)


def _train_cache(context):
    from include.stages import job_cache

    return job_cache(run_context(context), tune=False)


def _tune_cache(context):
    from include.stages import job_cache

    return job_cache(run_context(context), tune=True)


def _shard_request(context, run_identity) -> dict | None:
    from include.stages import shard_processing_request

    return shard_processing_request(run_context(context), run_identity, context["task"].spec)


def _deploy_request(context, run_identity) -> dict:
    from include.stages import deployment_request

    ti = context["ti"]
    approval = ti.xcom_pull(task_ids="approve", key="approval")
    return deployment_request(run_context(context), run_identity, ti.xcom_pull(task_ids="evaluate"), approval)


def _track_deployment(context, result: dict) -> dict:
    from include.stages import track_deployment

    return track_deployment(run_context(context), result)


object_detection_pipeline()
