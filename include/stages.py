"""The pipeline's stages as plain functions of a run context.

The Airflow DAG's tasks and the ``detection-pipeline run`` command both call these, so a
stage does the same thing in both. Each takes a :class:`RunContext` (validated config plus the
run's folder layout) and earlier stages' small summaries, and returns a small JSON-able summary
(URIs and counts, never data) that Airflow keeps in XCom.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include import storage
from include.configs import PipelineConfig, load_config
from include.run_layout import EXPORT_JSON, QUALITY_JSON, TRAINING_JSON, RunLayout
from include.tracking.runs import TrackingRef
from include.training.hyperparameters import label_width

if TYPE_CHECKING:
    from include.cache import JobCache, Outcome, StepCache

log = logging.getLogger(__name__)


def metered(step: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Record the stage's CPU and wall seconds in its run's ``cost/<step>.json`` (:func:`include.cost.metered`)."""

    def wrap(stage: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(stage)
        def run(ctx: RunContext, *args: Any, **kwargs: Any) -> Any:
            from include.cost import metered as meter

            with meter(ctx.layout.root, step):
                return stage(ctx, *args, **kwargs)

        return run

    return wrap


@dataclass(frozen=True)
class RunContext:
    """Everything a stage needs to know about its run."""

    config: PipelineConfig
    layout: RunLayout
    dag_id: str
    run_id: str
    try_number: int = 1
    #: Where the run is tracked (None: a context built by hand, whose stages track nothing).
    tracking: TrackingRef | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "layout": self.layout.as_dict(),
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "tracking": self.tracking.as_dict() if self.tracking else None,
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
            tracking=TrackingRef.from_dict(data["tracking"]) if data.get("tracking") else None,
        )


def resolve(
    params: dict[str, Any], dag_id: str, run_id: str, try_number: int = 1, airflow_url: str | None = None
) -> RunContext:
    """Validate the configuration with ``params`` applied, lay out the run's folders and open its tracking run.

    The tracking server must answer here, before any work is paid for (a wrong or unreachable
    ``tracking.uri`` is a configuration error naming it). ``airflow_url``: the run's page in
    Airflow, linked from the MLflow run.
    """
    from include.cost import check_budget
    from include.tracking.records import record_run_settings
    from include.tracking.runs import open_pipeline_run
    from include.tracking.uri import check_reachable, resolve_uri

    cfg = load_config(params=params)
    check_budget(cfg)  # before anything is launched
    layout = RunLayout.create(cfg.storage.base_uri or "", dag_id, run_id)
    uri = resolve_uri(cfg)
    check_reachable(uri, cfg.tracking.timeout_seconds)
    cfg.tracking.uri = uri
    ref = open_pipeline_run(cfg, uri, dag_id, run_id)
    record_run_settings(ref, cfg, {"detection.storage": layout.root,
                                   **({"detection.airflow_url": airflow_url} if airflow_url else {})})
    log.info("backend=%s storage=%s tracking=%s run %s", cfg.backend, layout.root, uri, ref.run_id)
    return RunContext(cfg, layout, dag_id, run_id, try_number, ref)


@contextlib.contextmanager
def _recorded(what: str) -> Iterator[None]:
    """Tracking inside a ``finally``: its own failure is logged, not raised over the stage's exception."""
    try:
        yield
    except Exception:
        log.exception("could not record %s in the tracking server", what)


@metered("ingest")
def ingest(ctx: RunContext) -> dict[str, Any]:
    """Read the data set into the canonical table (generating the sample data set when asked)."""
    from include.preprocess.ingest import ingest as run_ingest

    ds = ctx.config.dataset
    source, fmt = ds.source, ds.format
    if source == "sample":
        source, fmt = str(_generate_sample(ctx)), _sample_layout(ds.format)
    return run_ingest(
        fmt,
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
    layout = _sample_layout(ds.format)
    many = layout == "groundtruth"
    return generate_sample(
        _sample_folder(ctx), n_images=ds.sample_images, seed=ds.seed, layout=layout, max_objects=4 if many else 1
    )


def _sample_layout(fmt: str) -> str:
    """The layout the sample is generated in: the format asked for (cub when auto)."""
    layout = "cub" if fmt == "auto" else fmt
    if layout not in ("cub", "groundtruth"):
        raise ValueError(f"dataset.source 'sample' comes in the cub or groundtruth format, not dataset.format={fmt!r}")
    return layout


@metered("validate")
def validate(ctx: RunContext) -> dict[str, Any]:
    """The bounding-box quality gate on the ingested table; its checks (passed or not) and the gated data set
    are tracked."""
    from include.preprocess.quality.gate import validate as run_validate
    from include.tracking.records import record_dataset, record_quality

    passed = False
    try:
        result = run_validate(ctx.layout.ingest, ctx.layout.quality, **gate_options(ctx.config))
        passed = True
    finally:
        if ctx.tracking is not None and not passed:
            with _recorded("the failed quality gate"):
                record_quality(ctx.tracking, ctx.layout.quality, failed=True)
    if ctx.tracking is not None:
        run = record_quality(ctx.tracking, ctx.layout.quality, failed=False, tag_pipeline_run=False)
        ds = ctx.config.dataset
        result["data_digest"] = record_dataset(
            ctx.tracking, result["uris"]["annotations"], f"{ds.format}:{ds.source}", {"detection.quality": "passed"}
        )
        result["tracking"] = _tracked(ctx, run.run_id if run else None)
    return result


def _tracked(ctx: RunContext, run_id: str | None) -> dict[str, Any]:
    """``{"run_id", "url"}`` of a stage's tracking run, for its XCom."""
    from include.tracking.runs import run_url

    assert ctx.tracking is not None
    return {"run_id": run_id, "url": run_url(ctx.tracking, run_id) if run_id else None}


def gate_options(config: PipelineConfig) -> dict[str, Any]:
    """The quality gate's settings from the configuration (the CLI's ``validate`` uses them too)."""
    q, hp = config.quality, config.training.hyperparameters
    return {
        "policy": q.policy,
        "checks": dict(q.checks),
        "label_width": label_width(hp),
        "min_box_side": q.min_box_side,
        "tolerance": q.tolerance,
        "near_duplicate_distance": q.near_duplicate_distance,
        "base_network": str(hp.get("base_network", "resnet-50")),
        "image_shape": int(hp.get("image_shape", 300)),
        "thumbnails": q.thumbnails,
    }


def step_cache(ctx: RunContext, step: str) -> StepCache | None:
    """The cache of ``step`` (``recordio``, ``training``, ``tuning``, ``evaluation``) for this run; None when the
    step's ``cache`` setting is off (``use_cache=false`` still records, it only skips the lookup)."""
    from include.cache import StepCache

    cfg = ctx.config
    if not getattr(cfg, "training" if step == "tuning" else step).cache:
        return None
    uri = cfg.cache.uri or storage.join(cfg.storage.base_uri or "", "_cache")
    listener = functools.partial(_track_cache_outcome, ctx.tracking) if ctx.tracking is not None else None
    return StepCache(storage.normalize(uri), step, ctx.dag_id, ctx.run_id, lookup=cfg.cache.enabled, listener=listener)


def _track_cache_outcome(ref: TrackingRef, outcome: Outcome) -> None:
    """A step's cache hit or miss as tags of the pipeline's tracking run (``detection.cache.<step>``)."""
    from include.tracking.runs import tag_run

    source = {f"detection.cache.{outcome.step}.source_run": outcome.source_run_id} if outcome.hit else {}
    tag_run(ref, {f"detection.cache.{outcome.step}": "hit" if outcome.hit else "miss",
                  f"detection.cache.{outcome.step}.reason": outcome.reason[:500], **source})  # fmt: skip


@metered("plan_recordio")
def plan_recordio(ctx: RunContext) -> list[dict[str, Any]]:
    """Shard specs for the RecordIO build (one mapped task each).

    On a cache hit (the same gated table, images and options built before) the earlier build is put in
    place and the specs carry no work: each shard task and the merge find the build finished.
    """
    from include.cache import cache_key
    from include.preprocess.recordio import finished_specs, plan_build, write_plan

    r = ctx.config.recordio
    plan = plan_build(ctx.layout.quality, **_recordio_options(ctx))
    cache = step_cache(ctx, "recordio")
    if cache is None:
        return write_plan(plan, ctx.layout.recordio, r.shards, r.workers)
    extra = {"channel_format": r.channel_format}
    if r.channel_format != "recordio":
        extra["label_attribute"] = r.label_attribute
    key = cache_key("recordio", {"build": plan.content(), **extra})
    outcome, _ = cache.reuse(key, ctx.layout.recordio)
    if outcome.hit:
        return finished_specs(plan, ctx.layout.recordio, r.shards, r.workers)
    return write_plan(plan, ctx.layout.recordio, r.shards, r.workers, cache_key=key)


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
    from include.cost import metered as meter
    from include.preprocess.recordio import build_shard

    with meter(spec["output_uri"].rsplit("/", 1)[0], f"build_recordio_shard-{spec['shard']}"):
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


@metered("merge_recordio")
def merge_recordio(ctx: RunContext, shard_results: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge the shards into the train/ and validation/ channels and recordio.json.

    With ``recordio.channel_format`` other than ``recordio`` (or ``training.algorithm: jumpstart``) the
    training channels of that format are written beside them (evaluation always reads the RecordIO
    validation channel).
    """
    from include.cache import read_marker
    from include.preprocess.recordio import merge_shards
    from include.training.pipeline_training import channel_format

    marker = read_marker(ctx.layout.recordio)
    if marker is not None and marker["hit"]:  # plan_recordio put an earlier build in place
        return marker["result"]
    result = merge_shards(ctx.layout.recordio, list(shard_results))
    r = ctx.config.recordio
    if channel_format(ctx.config) != "recordio":
        from include.preprocess.channels import build_training_channels

        result["training_channels"] = build_training_channels(
            ctx.layout.quality,
            ctx.layout.recordio,
            channel_format(ctx.config),
            label_attribute=r.label_attribute,
            flip=r.flip,
            quality=r.quality,
            workers=r.workers,
        )
    cache = step_cache(ctx, "recordio")
    if cache is not None and marker is not None:
        cache.store(marker["key"], ctx.layout.recordio, result, about={"records": result["records"]})
        result["cache"] = {k: v for k, v in marker.items() if k != "result"}
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


def job_cache(ctx: RunContext, tune: bool) -> JobCache | None:
    """The cache of this run's training (or tuning) request (:func:`include.execution.execute` takes it)."""
    from include.cache import JobCache, cache_key
    from include.cache_keys import training_key_parts

    cache = step_cache(ctx, "tuning" if tune else "training")
    if cache is None:
        return None
    backend, recordio = ctx.config.backend, ctx.layout.recordio
    return JobCache(
        cache, ctx.layout.training,
        lambda operation, request: cache_key(cache.step, training_key_parts(request, backend, recordio)),
    )  # fmt: skip


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


def track_training(ctx: RunContext, training: dict[str, Any]) -> dict[str, Any]:
    """Record a finished training or tuning job (the operators' result) as the run's ``train`` / ``tune`` runs;
    the result with ``tracking`` (its run, and the model source the registry takes) added.

    A SageMaker tuning job's trials are saved beside the run's training records first (``tuning.json`` and
    each trial's ``training.json``, as the local tuner leaves them): its tracking and the run's cost read them.
    """
    if ctx.config.backend == "sagemaker" and training.get("tuning_job_name"):
        from include.sagemaker.client import sagemaker_client
        from include.sagemaker.tuning_trials import save_trials

        save_trials(sagemaker_client(ctx.config.sagemaker.region), training["tuning_job_name"], ctx.layout.training)
    if ctx.tracking is None:
        return training
    from include.tracking.training import record_training

    tracked = record_training(ctx.tracking, training, ctx.config.backend, ctx.layout.training,
                              ctx.config.sagemaker.region)
    return {**training, "tracking": tracked}


@metered("evaluate")
def evaluate(ctx: RunContext, training: dict[str, Any]) -> dict[str, Any]:
    """Independent evaluation of the trained artifact, charts, samples and report.html (tracked)."""
    from include.cache import cache_key
    from include.cache_keys import evaluation_key_parts
    from include.evaluation.evaluate import evaluate as run_evaluate

    e = ctx.config.evaluation
    cache, key, result = step_cache(ctx, "evaluation"), "", None
    if cache is not None:
        options = {"score_threshold": e.score_threshold, "samples": e.samples,
                   "promotion_threshold": e.promotion_threshold, "label_issues": e.label_issues,
                   "label_issues_shown": e.label_issues_shown, "backend": ctx.config.backend,
                   "monitoring_baseline": _baseline_settings(ctx.config)}  # fmt: skip
        key = cache_key("evaluation", evaluation_key_parts(training["artifact_uri"], ctx.layout.recordio, options))
        _, reused = cache.reuse(key, ctx.layout.evaluation)
        if reused is not None:  # the same model on the same data: the report it got then
            if ctx.config.backend == "sagemaker":
                training_output(ctx, training)  # the job's record beside the model, as a fresh evaluation leaves it
            result = {**reused, "model_uri": storage.normalize(training["artifact_uri"])}
    if result is None:
        result = run_evaluate(
            training_output(ctx, training),
            ctx.layout.recordio,
            ctx.layout.evaluation,
            score_threshold=e.score_threshold,
            samples=e.samples,
            quality_uri=storage.join(ctx.layout.quality, QUALITY_JSON),
            label_issues=e.label_issues,
            label_issues_shown=e.label_issues_shown,
            promotion_threshold=e.promotion_threshold,
            monitoring=_baseline_options(ctx),
        )
        if cache is not None:
            cache.store(key, ctx.layout.evaluation, result, about={"model_uri": result["model_uri"]})
    log.info("evaluation report: %s", result["report_uri"])
    result["monitoring_baseline_uri"] = publish_baseline(ctx, result)
    if ctx.tracking is not None:  # a reused evaluation is this run's too: its figures go to this run's MLflow run
        from include.tracking.records import record_evaluation

        run = record_evaluation(ctx.tracking, result, ctx.layout.evaluation)
        result["tracking"] = _tracked(ctx, run.run_id)
    return result


def _baseline_settings(config: PipelineConfig) -> dict[str, Any]:
    """What a monitoring baseline depends on besides the model and the data (part of evaluation's cache key)."""
    m = config.monitoring
    return {"score_threshold": m.score_threshold, "images": m.baseline_images, "thresholds": m.threshold_settings()}


def _baseline_options(ctx: RunContext) -> dict[str, Any]:
    """The monitoring baseline evaluation writes: input statistics over the gated table's training and validation
    images (a seeded sample of ``monitoring.baseline_images``), the thresholds, and where the data came from."""
    import random

    from include.preprocess.annotations import TRAINING_SPLITS, read_columns

    table = read_columns(ctx.layout.quality, ["image_uri", "split"])
    images = sorted({uri for uri, split in zip(table["image_uri"], table["split"], strict=True)
                     if split in TRAINING_SPLITS})  # fmt: skip
    settings = _baseline_settings(ctx.config)
    if len(images) > settings["images"]:
        images = sorted(random.Random(ctx.config.dataset.seed).sample(images, settings["images"]))
    ds = ctx.config.dataset
    return {
        "image_uris": images,
        "score_threshold": settings["score_threshold"],
        "thresholds": settings["thresholds"],
        "about": {"dataset_source": ds.source, "dataset_format": ds.format, "dag_id": ctx.dag_id,
                  "run_id": ctx.run_id, "input_split": ",".join(TRAINING_SPLITS)},  # fmt: skip
    }


def publish_baseline(ctx: RunContext, evaluation: dict[str, Any]) -> str | None:
    """Put the evaluation's monitoring baseline beside the model (``monitoring/`` next to ``model.tar.gz``, where
    the registry's version points); its URI, or None when the evaluation wrote none."""
    from include.monitoring.model_monitor import CONSTRAINTS_FILE, STATISTICS_FILE
    from include.monitoring.monitor import BASELINE_FOLDER, baseline_location

    written = storage.join(ctx.layout.evaluation, BASELINE_FOLDER)
    if not storage.exists(storage.join(written, STATISTICS_FILE)):
        log.warning("evaluation wrote no monitoring baseline (%s): this model cannot be monitored", written)
        return None
    target = baseline_location(evaluation["model_uri"])
    for name in (STATISTICS_FILE, CONSTRAINTS_FILE):
        storage.write_bytes(storage.join(target, name), storage.read_bytes(storage.join(written, name)))
    return target


def _tracking(ctx: RunContext) -> TrackingRef:
    if ctx.tracking is None:
        raise ValueError(f"run {ctx.run_id} has no tracking run: the registry needs one (resolve the run first)")
    return ctx.tracking


@metered("export")
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


@metered("promotion")
def promotion(ctx: RunContext, evaluation: dict[str, Any], training: dict[str, Any]) -> dict[str, Any]:
    """The promotion gate: register the model as a version, then promote it only when it is at least as good as
    the threshold and the ``champion`` version.

    Every trained model becomes a version (tagged with its metrics, run, data and export); a winner waits
    for approval (:func:`approve`) and on the sagemaker backend becomes a model package pending
    approval. Nothing moves the ``champion`` alias here.
    """
    from include.tracking.promotion import gate

    exported = storage.join(ctx.layout.export, EXPORT_JSON)  # the run's ONNX file and Neo model, kept on the version
    decision = gate(ctx.config, _tracking(ctx), evaluation, training, exported)
    log.log(logging.INFO if decision["promote"] else logging.WARNING, "promotion gate: %s", decision["reason"])
    return {**decision, "deploy": decision["promote"] and ctx.config.deploy.enabled}


def approval_request(ctx: RunContext, decision: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, str]:
    """The subject and Markdown body a person sees when asked to approve the challenger."""
    from include.tracking.promotion import approval_request as build

    return build(_tracking(ctx), decision, evaluation, ctx.config.promotion.approval_timeout_minutes)


def approve(ctx: RunContext, decision: dict[str, Any], *, approved: bool, by: str, reason: str) -> dict[str, Any]:
    """Record the approval of the gate's winner: approved, its version becomes ``champion`` (the old one
    ``previous``) and its model package ``Approved``; rejected, the reason is kept on the version and the run."""
    from include.tracking.promotion import record_approval

    return record_approval(ctx.config, _tracking(ctx), decision, approved=approved, by=by, reason=reason)


def deployment_request(
    ctx: RunContext, run: Any, evaluation: dict[str, Any], approval: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The combined CreateModel / CreateEndpointConfig / CreateEndpoint request of this run and try.

    On the sagemaker backend the model comes from the approved model package of the approval
    (checked to be ``Approved`` first: SageMaker will not deploy any other). With ``deploy.runtime:
    onnxruntime`` (local only) the model is the run's ONNX export (the export stage ran before).
    """
    from include.endpoints.lifecycle import deployment_request as build

    package = (approval or {}).get("model_package_arn") if ctx.config.backend == "sagemaker" else None
    if package:
        from include.sagemaker.client import sagemaker_client
        from include.sagemaker.model_packages import approved_model_data

        approved_model_data(sagemaker_client(ctx.config.sagemaker.region), package)
    model_uri = evaluation["model_uri"]
    if ctx.config.deploy.runtime == "onnxruntime":
        from include.export.model_export import onnx_model_uri

        model_uri = onnx_model_uri(ctx.layout.export)
    return build(ctx.config, run, model_uri, ctx.config.deploy.keep_endpoint_minutes, model_package_arn=package)


def track_deployment(ctx: RunContext, deployed: dict[str, Any]) -> dict[str, Any]:
    """Record the deployed endpoint on the pipeline run (name, URL or region, status)."""
    if ctx.tracking is not None:
        from include.tracking.records import record_event

        where = {"url": deployed["endpoint_url"]} if deployed.get("endpoint_url") else {
            "region": ctx.config.sagemaker.region}
        record_event(ctx.tracking, "deploy", {"endpoint_name": deployed["endpoint_name"],
                                              "status": deployed["status"], **where})
    return deployed


@metered("smoke_test")
def smoke_test(ctx: RunContext, deployed: dict[str, Any]) -> dict[str, Any]:
    """Send validation images to the endpoint and check the answers (the outcome is tracked)."""
    from include.endpoints.invocation import smoke_test as run_smoke
    from include.endpoints.invocation import validation_images
    from include.preprocess.annotations import read_classes

    images = validation_images(ctx.layout.quality, ctx.config.deploy.smoke_images)
    try:
        result = run_smoke(ctx.config, deployed["endpoint_name"], images, len(read_classes(ctx.layout.quality)))
    except Exception as exc:
        if ctx.tracking is not None:
            from include.tracking.records import record_event

            with _recorded("the failed smoke test"):
                record_event(ctx.tracking, "smoke_test", {"passed": False, "error": str(exc)[:500]})
        raise
    if ctx.tracking is not None:
        from include.tracking.records import record_event

        record_event(ctx.tracking, "smoke_test", {"passed": True, "images": result.get("images", ""),
                                                  "detections": result.get("detections", "")})
    return result


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
    from include.cost import record_endpoint_lifetimes

    record_endpoint_lifetimes(ctx.layout.root, result.pop("endpoint_lifetimes", []))
    result["cost"] = run_cost(ctx)
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
    if ctx.tracking is not None:
        from include.tracking.records import record_event

        removed = stopped + (result.get("deleted") or {}).get("endpoints", [])
        record_event(ctx.tracking, "teardown", {"removed": ",".join(removed) or "nothing",
                                                "kept": ",".join(kept)})
    return result


def run_cost(ctx: RunContext) -> dict[str, Any]:
    """The run's cost so far (``<run>/cost.json``, and a Cost section of its report.html); a small summary.

    Training jobs are read from the run's ``training.json`` records (evaluation saves SageMaker's
    DescribeTrainingJob answer beside the model, the tune task every trial's); one reused from the cache cost
    this run nothing. Endpoints are priced from the lives teardown recorded (creation to deletion).
    """
    import json

    from include.cache import read_marker
    from include.cost import endpoint_cost, recorded_endpoint_lifetimes, summarize, training_job_cost

    marker = read_marker(ctx.layout.training) if storage.exists(ctx.layout.training) else None
    reused = bool(marker and marker.get("hit"))
    records = [u for u in storage.walk_files(ctx.layout.training) if u.endswith("/" + TRAINING_JSON)] if (
        storage.exists(ctx.layout.training)) else []  # fmt: skip
    jobs = [training_job_cost(ctx.config, json.loads(storage.read_text(uri)), reused) for uri in records]
    endpoints = [endpoint_cost(ctx.config, life) for life in recorded_endpoint_lifetimes(ctx.layout.root)]
    summary = summarize(ctx.config, ctx.layout.root, jobs, endpoints)
    report = storage.join(ctx.layout.evaluation, "report.html")
    if storage.exists(report):
        from include.evaluation.report import COST_SECTION_ID, cost_section, with_section

        storage.write_text(report, with_section(storage.read_text(report), cost_section(summary), COST_SECTION_ID))
    uri = storage.join(ctx.layout.root, "cost.json")
    log.info("cost: $%.2f, %.0f billable s, %.2f endpoint instance-hours, %.1f CPU s on this machine (%s)",
             summary["usd"], summary["billable_seconds"], summary["endpoint_hours"], summary["cpu_seconds"],
             uri)  # fmt: skip
    figures = {"usd": summary["usd"], "billable_seconds": summary["billable_seconds"],
               "endpoint_hours": summary["endpoint_hours"], "cpu_seconds": summary["cpu_seconds"]}  # fmt: skip
    if ctx.tracking is not None:
        from include.tracking.runs import Metric
        from include.tracking.runs import log as log_tracking

        with _recorded("the run's cost"):
            metrics = [Metric(f"cost.{key}", value) for key, value in figures.items()]
            log_tracking(ctx.tracking, ctx.tracking.run_id, metrics=metrics)
    return {**figures, "uri": uri}


def close_tracking(ctx: RunContext, failed: bool) -> dict[str, Any]:
    """End the run's tracking: the pipeline run FINISHED (or FAILED when a task failed), and any stage run still
    open (its task failed) FAILED."""
    from include.tracking.runs import FAILED, FINISHED, finish, open_children

    ref = _tracking(ctx)
    left_open = open_children(ref)
    for run in left_open:
        finish(ref, run.run_id, FAILED)
    finish(ref, ref.run_id, FAILED if failed else FINISHED)
    return {"run_id": ref.run_id, "status": FAILED if failed else FINISHED, "closed_stage_runs": len(left_open)}


# --- the standing production endpoint (the model_release DAG and the CLI) -----------------------


def release_endpoint(
    params: dict[str, Any], *, by: str, reason: str, model_uri: str | None = None, port: int | None = None
) -> dict[str, Any]:
    """Release to the production endpoint (``params``: the ``model_release`` DAG's): the registry's champion, or
    ``model_version``, or ``model_uri`` given by hand (no registry then); a rollback with ``action: rollback``.

    The outcome (endpoint, generation or endpoint config, what was released, its history entry).
    """
    from include.endpoints import production

    cfg = load_config(params={k: v for k, v in params.items() if k == "backend"})
    name = params.get("endpoint_name") or None
    smoke = params.get("smoke_images") or None
    if params.get("action", production.ROLLOUT) == production.ROLLBACK:
        return production.rollback(cfg, name=name, by=by, reason=reason, smoke_images=smoke,
                                   registry=_registry_or_none(cfg))  # fmt: skip
    runtime = params.get("runtime") or cfg.deploy.runtime
    if model_uri:
        model = production.Release(model_uri, None, runtime)
    else:
        registry = _registry_or_none(cfg, required=True)
        model = production.release_from_registry(registry, params.get("model_version"), runtime)
    return production.release(cfg, model, name=name, by=by, reason=reason, smoke_images=smoke, port=port)


def _registry_or_none(cfg: PipelineConfig, required: bool = False) -> Any:
    """The pipeline's registered model (the tracking server must answer when ``required``), else None."""
    from include.project import PIPELINE_DAG_ID
    from include.tracking.registry import Registry
    from include.tracking.uri import check_reachable, resolve_uri

    try:
        uri = resolve_uri(cfg)
        check_reachable(uri, cfg.tracking.timeout_seconds)
    except Exception:
        if required:
            raise
        log.warning("the tracking server does not answer: the registry's champion is not moved back")
        return None
    return Registry(uri, cfg.tracking.registered_model or PIPELINE_DAG_ID)


def verify_release(params: dict[str, Any], released: dict[str, Any]) -> dict[str, Any]:
    """Invoke the production endpoint at its stable address (SageMaker Runtime's API: InvokeEndpoint) and check
    the answer against the contract and the released model's classes."""
    from include.endpoints.invocation import runtime_invoker
    from include.endpoints.production import smoke_image_uris
    from include.serving.smoke import smoke_test

    cfg = load_config(params={k: v for k, v in params.items() if k == "backend"})
    entry = released["release"]
    images = smoke_image_uris(entry["model_uri"], params.get("smoke_images") or None, 1)
    invoke = runtime_invoker(cfg, released["endpoint_name"], released.get("url"))
    return smoke_test(invoke, images, max_body_bytes=int(cfg.deploy.max_body_mb * 1024 * 1024))


# --- monitoring of what the endpoint sees (the detection_monitoring DAG and the CLI) --------------

MONITORING_DAG_ID = "detection_monitoring"


def monitor(
    params: dict[str, Any], *, run_id: str, end: Any = None, output_uri: str | None = None,
    input_uri: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One monitoring pass (``params``: the ``detection_monitoring`` DAG's): ``source`` (empty: ``monitoring.source``,
    else the production endpoint's captured data) in the ``window_hours`` before ``end`` (now when None), against
    ``baseline`` (empty: the registry's champion's; a version number; or a baseline folder's URI). Files go to
    ``output_uri`` (default ``<storage>/detection_monitoring/<run id>/``). The summary says whether it drifted and,
    when retraining is asked for (``trigger_retraining``, else ``monitoring.retraining.enabled``), the extra of
    the ``labelled_dataset`` asset event that starts the training pipeline."""
    from datetime import UTC, datetime, timedelta

    from include.monitoring.monitor import DRIFTED, read_baseline
    from include.monitoring.monitor import monitor as run_monitor
    from include.run_layout import safe_id

    cfg = load_config(params={k: v for k, v in params.items() if k == "backend"})
    m = cfg.monitoring
    baseline_uri = _monitoring_baseline(cfg, params.get("baseline"))
    source = params.get("source") or m.source or _capture_source(cfg)
    end = end or datetime.now(UTC)
    start = end - timedelta(hours=int(params.get("window_hours") or m.window_hours))
    output = output_uri or storage.join(cfg.storage.base_uri or "", MONITORING_DAG_ID, safe_id(run_id))
    result = run_monitor(source, baseline_uri, output, input_uri=input_uri, start=start, end=end,
                         min_images=m.min_images, thresholds=m.threshold_settings(),
                         about={"run_id": run_id})  # fmt: skip
    wanted = params.get("trigger_retraining")
    wanted = m.retraining.enabled if wanted is None else bool(wanted)
    result["retraining"] = None
    if result["status"] == DRIFTED and wanted:
        about = read_baseline(baseline_uri)[0].get("detection") or {}
        data = {"dataset_source": m.retraining.dataset_source or about.get("dataset_source"),
                "dataset_format": m.retraining.dataset_format or about.get("dataset_format")}  # fmt: skip
        result["retraining"] = {**{k: v for k, v in data.items() if v}, "monitoring_run": run_id,
                                "reason": result["reason"][:1000], "report_uri": result["report_uri"]}  # fmt: skip
    return result


def _capture_source(cfg: PipelineConfig) -> str:
    """The production endpoint's captured data: ``<deploy.capture.destination>/<endpoint name>``."""
    from include.endpoints.production import capture_destination

    return storage.join(capture_destination(cfg), cfg.deploy.production.endpoint_name)


def _monitoring_baseline(cfg: PipelineConfig, baseline: Any) -> str:
    """The baseline to compare with: a folder URI as given, a registry version's (a number, ``v3``) or, when empty,
    the ``champion``'s; ``ValueError`` naming what is missing (:class:`NothingToMonitor` when there is no champion)."""
    from include.monitoring.monitor import NothingToMonitor
    from include.tracking.registry import CHAMPION

    text = str(baseline or "").strip()
    if text and not text.lstrip("v").isdigit():
        return text
    registry = _registry_or_none(cfg, required=True)
    if text:
        version = registry.version(int(text.lstrip("v")))
    else:
        lookup = registry.lookup(CHAMPION)
        if lookup.version is None:
            raise NothingToMonitor(lookup.note or f"registered model {registry.name!r} has no champion to monitor: "
                                   "promote a version first, or give a baseline")  # fmt: skip
        version = lookup.version
    log.info("monitoring against version %s's baseline %s", version.version, version.baseline_uri)
    return version.baseline_uri
# --- batch transform and pre-labels (the batch_inference DAG and the CLI's transform / prelabel) ----------


def resolve_transform(params: dict[str, Any], dag_id: str, run_id: str) -> dict[str, Any]:
    """What a batch transform scores with what, and where its output and pre-labels go (``params``: the
    ``batch_inference`` DAG's); the plan the later steps take.

    ``model``: any path ``evaluate`` takes (a training output, job folder, tuning folder or model.tar.gz); empty:
    the registry's champion. ``output_uri`` / ``prelabels_uri`` default to the run's folders
    ``<storage>/<dag>/<run>/transform`` and ``.../prelabels``.
    """
    from include.endpoints.lifecycle import model_artifact_uri
    from include.run_layout import PRELABELS_FOLDER, TRANSFORM_FOLDER, safe_id

    settings = {"backend": params["backend"]} if params.get("backend") else {}
    cfg = load_config(params=settings)
    if not params.get("input_uri"):
        raise ValueError("input_uri is required: the folder or S3 prefix of images to score")
    if params.get("model"):
        model_uri, source = model_artifact_uri(str(params["model"])), str(params["model"])
    else:
        from include.endpoints.production import release_from_registry

        model_uri, source = release_from_registry(_registry_or_none(cfg, required=True), None).model_uri, "champion"
    root = storage.join(cfg.storage.base_uri or "", safe_id(dag_id), safe_id(run_id))
    plan = {
        "dag_id": dag_id,
        "run_id": run_id,
        "params": settings,
        "backend": cfg.backend,
        "model_uri": storage.normalize(model_uri),
        "model_source": source,
        "input_uri": storage.normalize(str(params["input_uri"])),
        "output_uri": storage.normalize(params.get("output_uri") or storage.join(root, TRANSFORM_FOLDER)),
        "prelabels_uri": storage.normalize(params.get("prelabels_uri") or storage.join(root, PRELABELS_FOLDER)),
        "score_threshold": params.get("score_threshold"),
        "workers": cfg.transform.workers,
    }
    log.info("transform %s with %s (%s) into %s", plan["input_uri"], plan["model_uri"], source, plan["output_uri"])
    return plan


def transform_request(plan: dict[str, Any], run: Any) -> dict[str, Any]:
    """The combined ``{"Model", "Transform"}`` request of ``plan`` for this run and try.

    On the sagemaker backend every input is checked first (SageMaker fails the whole job on one bad image):
    the bad ones get their error records now and the request names a manifest of the others.
    """
    from include.sagemaker.requests import LOCAL_ROLE_ARN, MANIFEST_FILE, S3_PREFIX, TransformSettings
    from include.sagemaker.requests import transform_request as build

    cfg = load_config(params=plan["params"])
    t = cfg.transform
    settings = TransformSettings(t.instance_type, t.instance_count, t.max_concurrent_transforms, t.max_payload_mb,
                                 t.invocation_timeout_seconds, t.invocation_max_retries)  # fmt: skip
    input_uri, input_type = plan["input_uri"], S3_PREFIX
    if cfg.backend == "sagemaker":
        from include.transform.sagemaker_job import prepare

        checked = prepare(plan["input_uri"], plan["output_uri"], t.max_payload_mb * 1024 * 1024)
        input_uri, input_type = checked["manifest_uri"], MANIFEST_FILE
    return build(run, model_data_url=plan["model_uri"], role_arn=cfg.sagemaker.role_arn or LOCAL_ROLE_ARN,
                 region=cfg.sagemaker.region, input_uri=input_uri, output_uri=plan["output_uri"], settings=settings,
                 input_type=input_type)  # fmt: skip


def finish_transform(plan: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """The transform's result with its counts and the paths of its error records; on the sagemaker backend
    transform.json is written now (SageMaker's description, counted from the output folder)."""
    from include.transform.outputs import error_records

    if result["backend"] == "sagemaker":
        from include.sagemaker.client import sagemaker_client
        from include.transform.sagemaker_job import record_job

        cfg = load_config(params=plan["params"])
        description = sagemaker_client(cfg.sagemaker.region).describe_transform_job(TransformJobName=result["job_name"])
        result = {**result, "counts": record_job(description)}
    errors = error_records(result["output_uri"])
    if errors:
        log.warning("%d inputs could not be scored (error records in %s): %s", len(errors), result["output_uri"],
                    ", ".join(errors[:10]) + (" ..." if len(errors) > 10 else ""))  # fmt: skip
    return {**result, "error_records": errors[:50], "model_uri": plan["model_uri"]}


def run_transform(plan: dict[str, Any], run: Any) -> dict[str, Any]:
    """The whole transform in one call (the CLI): the request through :func:`include.execution.execute`
    (``plan["workers"]``: local processes, ``transform.workers`` unless the command line says)."""
    from include.execution import TRANSFORM, execute

    cfg = load_config(params=plan["params"])
    result = execute(TRANSFORM, transform_request(plan, run), backend=cfg.backend, region=cfg.sagemaker.region,
                     local_options={"workers": plan.get("workers")})  # fmt: skip
    return finish_transform(plan, result)


def prelabels(plan: dict[str, Any], image_root_url: str | None = None) -> dict[str, Any]:
    """Pre-labels (COCO, Label Studio, Ground Truth manifest) from the plan's transform output, with the model's
    class names (``plan["classes"]``, in class-id order, for a model without classes.json)."""
    from include.serving.draw import read_classes
    from include.transform.outputs import read_output
    from include.transform.prelabels import write_prelabels

    t = load_config(params=plan["params"]).transform
    threshold = plan.get("score_threshold")
    names = plan.get("classes")  # a SageMaker-trained model.tar.gz holds no classes.json
    return write_prelabels(
        read_output(plan["output_uri"]),
        dict(enumerate(names)) if names else read_classes(plan["model_uri"]),
        plan["prelabels_uri"],
        score_threshold=t.prelabel_score_threshold if threshold is None else float(threshold),
        formats=plan.get("formats") or t.prelabel_formats,
        label_attribute=t.label_attribute,
        image_root_url=image_root_url,
    )
