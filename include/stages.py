"""The pipeline's stages as plain functions of a run context.

The Airflow DAG's tasks and the ``detection-pipeline run`` command both call these, so a
stage does the same thing in both. Each takes a :class:`RunContext` (validated config plus the
run's folder layout) and earlier stages' small summaries, and returns a small JSON-able summary
(URIs and counts, never data) that Airflow keeps in XCom.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include import storage
from include.configs import PipelineConfig, load_config
from include.run_layout import EXPORT_JSON, QUALITY_JSON, TRAINING_JSON, RunLayout
from include.training.hyperparameters import label_width

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunContext:
    """Everything a stage needs to know about its run."""

    config: PipelineConfig
    layout: RunLayout
    dag_id: str
    run_id: str
    try_number: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "layout": self.layout.as_dict(),
            "dag_id": self.dag_id,
            "run_id": self.run_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], try_number: int = 1) -> RunContext:
        """Rebuild the context a ``resolve_config`` task returned (the config was validated there)."""
        return cls(
            config=PipelineConfig.model_validate(data["config"]),
            layout=RunLayout(**data["layout"]),
            dag_id=data["dag_id"],
            run_id=data["run_id"],
            try_number=try_number,
        )


def resolve(params: dict[str, Any], dag_id: str, run_id: str, try_number: int = 1) -> RunContext:
    """Validate the configuration with ``params`` applied and lay out the run's folders."""
    cfg = load_config(params=params)
    layout = RunLayout.create(cfg.storage.base_uri or "", dag_id, run_id)
    log.info("backend=%s storage=%s", cfg.backend, layout.root)
    return RunContext(cfg, layout, dag_id, run_id, try_number)


def ingest(ctx: RunContext) -> dict[str, Any]:
    """Read the data set into the canonical table (generating the sample data set when asked)."""
    from include.preprocess.ingest import ingest as run_ingest

    ds = ctx.config.dataset
    source = ds.source
    if source == "sample":
        source = str(_generate_sample(ctx))
    return run_ingest(
        ds.format,
        source,
        ctx.layout.ingest,
        classes=ds.classes or None,
        label_attribute=ds.label_attribute,
        validation_fraction=ds.validation_fraction,
        test_fraction=ds.test_fraction,
        seed=ds.seed,
        image_policy=ds.image_policy,
    )


def _sample_folder(ctx: RunContext) -> Path:
    """Where this run's generated sample lives: its ``dataset/`` folder, or under ``data/sample`` when storage is S3."""
    from include.project import PROJECT_ROOT

    if storage.is_local(ctx.layout.dataset):
        return storage.local_path(ctx.layout.dataset)
    return PROJECT_ROOT / "data" / "sample" / ctx.layout.root.rsplit("/", 1)[-1]


def _generate_sample(ctx: RunContext) -> Any:
    """Generate the embedded sample data set for this run (locally, also when storage is S3)."""
    from include.preprocess.sample_data import generate_sample

    ds = ctx.config.dataset
    if ds.format not in ("cub", "groundtruth"):
        raise ValueError(
            f"dataset.source 'sample' comes in the cub or groundtruth format, not dataset.format={ds.format!r}"
        )
    many = ds.format == "groundtruth"
    return generate_sample(
        _sample_folder(ctx), n_images=ds.sample_images, seed=ds.seed, layout=ds.format, max_objects=4 if many else 1
    )


def validate(ctx: RunContext) -> dict[str, Any]:
    """The bounding-box quality gate on the ingested table."""
    from include.preprocess.quality.gate import validate as run_validate

    q = ctx.config.quality
    return run_validate(
        ctx.layout.ingest,
        ctx.layout.quality,
        policy=q.policy,
        label_width=label_width(ctx.config.training.hyperparameters),
        min_box_side=q.min_box_side,
        tolerance=q.tolerance,
    )


def plan_recordio(ctx: RunContext) -> list[dict[str, Any]]:
    """Shard specs for the RecordIO build (one mapped task each)."""
    from include.preprocess.recordio import plan_shards

    r = ctx.config.recordio
    return plan_shards(ctx.layout.quality, ctx.layout.recordio, r.shards, workers=r.workers, **_recordio_options(ctx))


def _recordio_options(ctx: RunContext) -> dict[str, Any]:
    r = ctx.config.recordio
    return {
        "resize": r.resize,
        "quality": r.quality,
        "flip": r.flip,
        "decoder": r.decoder,
        "label_width": label_width(ctx.config.training.hyperparameters),
    }


def build_recordio_shard(spec: dict[str, Any]) -> dict[str, Any]:
    """Build one shard's records."""
    from include.preprocess.recordio import build_shard

    return build_shard(spec)


def shard_processing_request(ctx: RunContext, run: Any, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The CreateProcessingJob request that builds the shard ``spec``, or None when the worker builds it.

    A Processing job when the backend is sagemaker and ``sagemaker.shard_processing`` is enabled;
    the job is named after the shard, the run and the try.
    """
    processing = ctx.config.sagemaker.shard_processing
    if ctx.config.backend != "sagemaker" or not processing.enabled:
        return None
    from include.preprocess.recordio import shard_uri
    from include.sagemaker.requests import LOCAL_ROLE_ARN, shard_processing_request

    return shard_processing_request(
        spec,
        name=run.name(f"shard-{spec['shard']}"),
        role_arn=ctx.config.sagemaker.role_arn or LOCAL_ROLE_ARN,
        image_uri=processing.image_uri or "",
        shard_uri=shard_uri(ctx.layout.recordio, spec["shard"]),
        tags=run.tags(),
        instance_type=processing.instance_type,
        volume_size_gb=processing.volume_size_gb,
        max_runtime_seconds=processing.max_runtime_seconds,
    )


def merge_recordio(ctx: RunContext, shard_results: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge the shards into the train/ and validation/ channels and recordio.json.

    With ``recordio.channel_format`` other than ``recordio`` the training channels of that format
    are written beside them (evaluation always reads the RecordIO validation channel).
    """
    from include.preprocess.recordio import merge_shards

    result = merge_shards(ctx.layout.recordio, list(shard_results))
    r = ctx.config.recordio
    if r.channel_format != "recordio":
        from include.preprocess.channels import build_training_channels

        result["training_channels"] = build_training_channels(
            ctx.layout.quality,
            ctx.layout.recordio,
            r.channel_format,
            label_attribute=r.label_attribute,
            flip=r.flip,
            quality=r.quality,
            workers=r.workers,
        )
    return result


def build_recordio(ctx: RunContext) -> dict[str, Any]:
    """The whole RecordIO build in one call (the CLI's ``run``)."""
    specs = plan_recordio(ctx)
    return merge_recordio(ctx, [build_recordio_shard(spec) for spec in specs])


def training_request(ctx: RunContext, run: Any, tune: bool) -> dict[str, Any]:
    """The CreateTrainingJob (or CreateHyperParameterTuningJob) request of this run and try.

    On the sagemaker backend the channels are the ``.rec`` objects themselves (File mode downloads
    everything under an S3 prefix, and the channel folders also hold the .lst and .idx files).
    """
    from include.training.pipeline_training import build_request

    return build_request(
        ctx.config,
        ctx.layout.recordio,
        ctx.layout.training,
        name=run.name("tune" if tune else "train"),
        tags=run.tags(),
        tune=tune,
        rec_file_channels=ctx.config.backend == "sagemaker",
    )


def training_output(ctx: RunContext, training: dict[str, Any]) -> str:
    """The folder evaluation reads: the tuning job's (local tuning), else the model's own folder.

    On SageMaker the job's DescribeTrainingJob answer is saved there as ``training.json`` first,
    so evaluation finds the job (and its CloudWatch metrics) the way it finds a local record.
    """
    if ctx.config.backend == "local" and training.get("tuning_job_name"):
        return storage.join(ctx.layout.training, training["tuning_job_name"])
    folder = training["artifact_uri"].rsplit("/", 1)[0]
    if ctx.config.backend == "sagemaker":
        import json

        from include.sagemaker.client import sagemaker_client

        sm = sagemaker_client(ctx.config.sagemaker.region)
        record = sm.describe_training_job(TrainingJobName=training["job_name"])
        record["data_uri"] = ctx.layout.recordio
        storage.write_text(storage.join(folder, TRAINING_JSON), json.dumps(record, default=str, indent=2))
    return folder


def evaluate(ctx: RunContext, training: dict[str, Any]) -> dict[str, Any]:
    """Independent evaluation of the trained artifact, charts, samples and report.html."""
    from include.evaluation.evaluate import evaluate as run_evaluate

    e = ctx.config.evaluation
    result = run_evaluate(
        training_output(ctx, training),
        ctx.layout.recordio,
        ctx.layout.evaluation,
        score_threshold=e.score_threshold,
        samples=e.samples,
        quality_uri=storage.join(ctx.layout.quality, QUALITY_JSON),
        promotion_threshold=e.promotion_threshold,
    )
    log.info("evaluation report: %s", result["report_uri"])
    return result


def export(ctx: RunContext, evaluation: dict[str, Any]) -> dict[str, Any]:
    """The evaluated model exported as ``export.formats`` asks: ONNX with parity proven on held-out images
    (and reported in report.html), a Neo compilation on SageMaker; recorded in ``<run>/export/export.json``."""
    from include.export.model_export import export_model
    from include.export.parity import channel_images
    from include.sagemaker.naming import RunIdentity

    e = ctx.config.export
    return export_model(
        ctx.config,
        evaluation["model_uri"],
        ctx.layout.export,
        run=RunIdentity(ctx.dag_id, ctx.run_id, ctx.try_number),
        formats=e.formats,
        images=channel_images(ctx.layout.recordio, e.parity_images),
        report_uri=evaluation["report_uri"],
    )


def promotion(ctx: RunContext, evaluation: dict[str, Any], training: dict[str, Any]) -> dict[str, Any]:
    """The promotion gate: deploy only a model at least as good as the threshold and the champion."""
    from include.evaluation.promotion import decide_promotion, record_champion, registry_uri

    registry = registry_uri(ctx.config.storage.base_uri or "", ctx.dag_id)
    candidate = {"run_id": ctx.run_id, "model_uri": evaluation["model_uri"], "job_name": training.get("job_name")}
    exported = storage.join(ctx.layout.export, EXPORT_JSON)
    if storage.exists(exported):  # the model's ONNX file and Neo compilation, recorded with it in the registry
        candidate["export_uri"] = storage.normalize(exported)
    decision = decide_promotion(evaluation, registry, ctx.config.evaluation.promotion_threshold, candidate)
    log.log(logging.INFO if decision["promote"] else logging.WARNING, "promotion gate: %s", decision["reason"])
    if decision["promote"]:
        record_champion(registry, candidate, evaluation)
    return {**decision, "registry_uri": registry, "deploy": decision["promote"] and ctx.config.deploy.enabled}


def deployment_request(ctx: RunContext, run: Any, evaluation: dict[str, Any]) -> dict[str, Any]:
    """The combined CreateModel / CreateEndpointConfig / CreateEndpoint request of this run and try.

    With ``deploy.runtime: onnxruntime`` the model is the run's ONNX export (the export stage ran before).
    """
    from include.endpoints.lifecycle import deployment_request as build

    model_uri = evaluation["model_uri"]
    if ctx.config.deploy.runtime == "onnxruntime":
        from include.export.model_export import onnx_model_uri

        model_uri = onnx_model_uri(ctx.layout.export)
    return build(ctx.config, run, model_uri, ctx.config.deploy.keep_endpoint_minutes)


def smoke_test(ctx: RunContext, deployed: dict[str, Any]) -> dict[str, Any]:
    """Send validation images to the endpoint and check the answers."""
    from include.endpoints.invocation import smoke_test as run_smoke
    from include.endpoints.invocation import validation_images
    from include.preprocess.annotations import read_classes

    images = validation_images(ctx.layout.quality, ctx.config.deploy.smoke_images)
    return run_smoke(ctx.config, deployed["endpoint_name"], images, len(read_classes(ctx.layout.quality)))


def teardown(ctx: RunContext, smoke_passed: bool) -> dict[str, Any]:
    """Remove the run's endpoints and stop its cloud jobs; after a passed smoke test, keep or delete as configured.

    With ``smoke_passed``, an endpoint with ``deploy.keep_endpoint_minutes`` left stays up (the
    sweeper removes it later), and ``deploy.delete_intermediate_files`` deletes the run's
    data set, ingest, quality and RecordIO folders (training and evaluation stay). After a failure
    everything the run wrote is kept for diagnosis.
    """
    from include.endpoints.lifecycle import teardown_run

    deploy = ctx.config.deploy
    result = teardown_run(
        ctx.config, ctx.dag_id, ctx.run_id, keep_unexpired=smoke_passed and deploy.keep_endpoint_minutes > 0
    )
    if smoke_passed and deploy.delete_intermediate_files:
        layout = ctx.layout
        result["deleted_files"] = [layout.dataset, layout.ingest, layout.quality, layout.recordio]
        for uri in result["deleted_files"]:
            storage.remove(uri, recursive=True)
        if ctx.config.dataset.source == "sample" and _sample_folder(ctx).is_dir():  # the local copy under S3 storage
            shutil.rmtree(_sample_folder(ctx))
    stopped = [s["name"] for s in result.get("stopped", []) if s.get("name")]
    deleted = [name for names in (result.get("deleted") or {}).values() for name in names]
    kept = result.get("kept_endpoints", [])
    log.info(
        "teardown: %s endpoint(s) stopped%s, %s kept%s%s",
        len(stopped) + len((result.get("deleted") or {}).get("endpoints", [])),
        f" ({', '.join(stopped)})" if stopped else "",
        len(kept),
        f" ({', '.join(kept)})" if kept else "",
        f"; deleted {', '.join(deleted)}" if deleted else "",
    )
    return result
