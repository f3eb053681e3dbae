"""Score a folder or S3 prefix of new images in bulk and turn the boxes into pre-labels for the next labelling round.

``resolve`` picks the model (the registry's ``champion`` unless ``model`` names one) and the folders;
``transform`` runs SageMaker Batch Transform's CreateTransformJob for the built-in object detector: on the
``sagemaker`` backend through the Amazon provider's operator (the images are checked first and only those
that decode are sent, in a manifest), on ``local`` with the endpoint's own inference code over the
machine's cores. Every image gets ``<output>/<path>.out`` (the endpoint's JSON) or, when it cannot be scored,
``<path>.error.json``; one bad file never stops the run. ``transform.json`` holds the counts.
``prelabels`` writes a COCO file, Label Studio tasks with scored predictions and a Ground Truth manifest.

Triggered by hand (the form below), or by an event on the ``unlabelled_images`` asset whose ``extra``
names ``input_uri`` (and optionally the other params).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, Param, dag, task
from detection_airflow.transforms import DetectionTransformOperator

#: New unlabelled images landing; the event's ``extra`` names ``input_uri`` (and may name other params).
UNLABELLED_IMAGES = Asset(name="unlabelled_images", uri="detection://unlabelled-images")
#: The backend is decided per run by ``resolve`` (param, else configuration).
BACKEND = "{{ ti.xcom_pull(task_ids='resolve')['backend'] }}"

PARAMS = {
    "input_uri": Param(
        "", type="string", title="Images",
        description="The folder (path or file:// URI) or s3:// prefix of the images to score (JPEG/PNG, any depth).",
    ),
    "model": Param(
        None, type=["null", "string"], title="Model",
        description="A training output folder, job folder, tuning folder or model.tar.gz (empty: the registry's "
        "champion).",
    ),
    "output_uri": Param(
        None, type=["null", "string"], title="Output",
        description="Where the .out files go, outside the input (empty: <storage>/batch_inference/<run>/transform).",
    ),
    "prelabels_uri": Param(
        None, type=["null", "string"], title="Pre-labels",
        description="Where the pre-labels go (empty: <storage>/batch_inference/<run>/prelabels).",
    ),
    "score_threshold": Param(
        None, type=["null", "number"], minimum=0, maximum=1, title="Pre-label score threshold",
        description="Boxes scoring at least this become pre-labels (empty: transform.prelabel_score_threshold, 0.3).",
    ),
    "backend": Param(
        "local", type="string", enum=["local", "sagemaker"], title="Backend",
        description="local: score on this machine. sagemaker: a SageMaker Batch Transform job.",
    ),
}  # fmt: skip


@dag(
    dag_id="batch_inference",
    description="Batch transform of new images with the champion model, and pre-labels for labelling.",
    doc_md=__doc__,
    schedule=UNLABELLED_IMAGES,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=2,
    tags=["object-detection", "batch-transform", "labelling"],
    default_args={"owner": "mlops", "retries": 1, "retry_delay": timedelta(seconds=30)},
    params=PARAMS,
)
def batch_inference():
    @task
    def resolve(**context) -> dict:
        """The model, input, output and pre-label folders of this run (a bad param fails here)."""
        from detection_airflow.context import run_params

        from include.stages import resolve_transform

        return resolve_transform(run_params(context, PARAMS), context["dag"].dag_id, context["run_id"])

    transform = DetectionTransformOperator(
        task_id="transform",
        backend=BACKEND,
        request_builder=_transform_request,
        result_handler=_finish_transform,
        local_options_builder=_local_options,
        deferrable=True,
        check_interval=60,
    )

    @task
    def prelabels(**context) -> dict:
        """COCO, Label Studio tasks and a Ground Truth manifest from the transform's output."""
        from include.stages import prelabels as stage

        return stage(context["ti"].xcom_pull(task_ids="resolve"))

    resolve() >> transform >> prelabels()


def _plan(context) -> dict:
    return context["ti"].xcom_pull(task_ids="resolve")


def _transform_request(context, run_identity) -> dict:
    from include.stages import transform_request

    return transform_request(_plan(context), run_identity)


def _local_options(context) -> dict:
    return {"workers": _plan(context)["workers"]}


def _finish_transform(context, result: dict) -> dict:
    from include.stages import finish_transform

    return finish_transform(_plan(context), result)


batch_inference()
