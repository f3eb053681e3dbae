"""The run tree of a pipeline run, found again by its tags, so a retried task reuses its run.

::

    experiment <tracking.experiment, default: the DAG id>
    └─ <Airflow run id>            detection.step=pipeline   the data set, headline metrics, events, outcome
       ├─ validate                 detection.step=validate   quality checks, quality.json / quality.html
       ├─ train                    detection.step=train      hyperparameters, per-epoch history, the model
       ├─ tune                     detection.step=tune       the tuning job
       │  └─ <training job>        detection.step=trial      one per trial
       └─ evaluate                 detection.step=evaluate   mAP, per-class AP, COCO mAP, report, charts

Every run carries ``detection.run_token`` (:func:`include.sagemaker.naming.run_token` of the DAG id
and run id: hex, so it is safe inside a search filter) and ``detection.step`` (plus
``detection.trial`` for trials); :func:`open_run` looks those up before it creates anything, and
reopens what it finds. Nesting is MLflow's ``mlflow.parentRunId`` tag. Values that change from one
try to the next (job names, endpoints) are tags: MLflow refuses to change a param.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from include.tracking.rest import ALREADY_EXISTS, NOT_FOUND, TrackingClient, TrackingError

if TYPE_CHECKING:
    from include.configs import PipelineConfig

TOKEN_TAG = "detection.run_token"
STEP_TAG = "detection.step"
TRIAL_TAG = "detection.trial"
DAG_TAG = "detection.dag_id"
AIRFLOW_RUN_TAG = "detection.airflow_run_id"
BACKEND_TAG = "detection.backend"
PARENT_TAG = "mlflow.parentRunId"
PIPELINE = "pipeline"

#: MLflow's limits on one ``log-batch`` call.
MAX_METRICS_PER_CALL = 1000
MAX_PARAMS_AND_TAGS_PER_CALL = 100
MAX_ENTITIES_PER_CALL = 1000
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000

#: Run states MLflow knows.
FINISHED, FAILED, KILLED, RUNNING = "FINISHED", "FAILED", "KILLED", "RUNNING"


@dataclass(frozen=True)
class TrackingRef:
    """Where a pipeline run is tracked: travels in the run context (XCom) to every task."""

    uri: str
    ui_url: str | None  # the MLflow UI's base URL for browsers; None: reached through Airflow (managed MLflow)
    experiment_id: str
    run_id: str  # the pipeline run
    registered_model: str
    token: str
    dag_id: str
    airflow_run_id: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrackingRef:
        return cls(**data)


@dataclass(frozen=True)
class Run:
    """The parts of an MLflow run the pipeline uses."""

    run_id: str
    artifact_uri: str
    status: str
    tags: dict[str, str]

    @classmethod
    def from_answer(cls, run: Mapping[str, Any]) -> Run:
        info = run["info"]
        tags = {t["key"]: t.get("value", "") for t in (run.get("data") or {}).get("tags", [])}
        return cls(info["run_id"], info["artifact_uri"], info["status"], tags)


_CLIENTS: dict[str, TrackingClient] = {}


def client(uri: str) -> TrackingClient:
    """This process's client for ``uri`` (one connection pool per tracking server)."""
    if uri not in _CLIENTS:
        _CLIENTS[uri] = TrackingClient(uri)
    return _CLIENTS[uri]


def now_ms() -> int:
    return int(time.time() * 1000)


def experiment_id(api: TrackingClient, name: str, tags: Mapping[str, str] | None = None) -> str:
    """The id of the experiment ``name``, created when it does not exist (two creators racing both get it)."""
    try:
        return api.call("GET", "experiments/get-by-name", params={"experiment_name": name})["experiment"][
            "experiment_id"
        ]
    except TrackingError as exc:
        if exc.code != NOT_FOUND:
            raise
    try:
        return api.call("POST", "experiments/create", {"name": name, "tags": _entries(tags or {})})["experiment_id"]
    except TrackingError as exc:
        if exc.code != ALREADY_EXISTS:
            raise
        return experiment_id(api, name)


def _entries(values: Mapping[str, Any]) -> list[dict[str, str]]:
    return [{"key": k, "value": str(v)} for k, v in values.items()]


def _filter(tags: Mapping[str, str]) -> str:
    for key, value in tags.items():
        if "'" in value or "`" in key:
            raise ValueError(f"tag {key}={value!r} cannot be searched for (quote)")
    return " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())


def find_run(api: TrackingClient, experiment: str, key_tags: Mapping[str, str]) -> Run | None:
    """The oldest active run of ``experiment`` carrying every tag of ``key_tags``, or None."""
    answer = api.call(
        "POST",
        "runs/search",
        {
            "experiment_ids": [experiment],
            "filter": _filter(key_tags),
            "max_results": 1,
            "order_by": ["attributes.start_time ASC"],
        },
    )
    runs = answer.get("runs") or []
    return Run.from_answer(runs[0]) if runs else None


def open_run(
    api: TrackingClient,
    experiment: str,
    *,
    name: str,
    key_tags: Mapping[str, str],
    tags: Mapping[str, str] | None = None,
) -> Run:
    """The run identified by ``key_tags``: found (and set RUNNING again) or created with ``tags`` as well."""
    found = find_run(api, experiment, key_tags)
    if found is not None:
        if found.status != RUNNING:
            api.call("POST", "runs/update", {"run_id": found.run_id, "status": RUNNING})
        if tags:
            log_batch(api, found.run_id, tags=tags)
        return Run(found.run_id, found.artifact_uri, RUNNING, {**found.tags, **dict(tags or {})})
    all_tags = {**dict(key_tags), **dict(tags or {})}
    answer = api.call(
        "POST",
        "runs/create",
        {"experiment_id": experiment, "run_name": name, "start_time": now_ms(), "tags": _entries(all_tags)},
    )
    return Run.from_answer(answer["run"])


def open_pipeline_run(cfg: PipelineConfig, uri: str, dag_id: str, run_id: str) -> TrackingRef:
    """The pipeline run of Airflow run ``run_id`` (created by ``resolve_config``, reopened when it runs again)."""
    from include.sagemaker.naming import run_token

    api = client(uri)
    experiment = experiment_id(api, cfg.tracking.experiment or dag_id, {DAG_TAG: dag_id})
    token = run_token(dag_id, run_id)
    run = open_run(
        api,
        experiment,
        name=run_id,
        key_tags={TOKEN_TAG: token, STEP_TAG: PIPELINE},
        tags={DAG_TAG: dag_id, AIRFLOW_RUN_TAG: run_id, BACKEND_TAG: cfg.backend},
    )
    ui_url = cfg.tracking.ui_url or (None if uri.startswith("arn:") else uri)
    return TrackingRef(
        uri=uri,
        ui_url=ui_url.rstrip("/") if ui_url else None,
        experiment_id=experiment,
        run_id=run.run_id,
        registered_model=cfg.tracking.registered_model or dag_id,
        token=token,
        dag_id=dag_id,
        airflow_run_id=run_id,
    )


def step_run(
    ref: TrackingRef,
    step: str,
    *,
    trial: str | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Run:
    """The child run of ``step`` (a trial's under its tuning run), found again on a retry."""
    key_tags = {TOKEN_TAG: ref.token, STEP_TAG: step, **({TRIAL_TAG: trial} if trial else {})}
    common = {PARENT_TAG: parent_run_id or ref.run_id, DAG_TAG: ref.dag_id, AIRFLOW_RUN_TAG: ref.airflow_run_id}
    return open_run(
        client(ref.uri), ref.experiment_id, name=trial or step, key_tags=key_tags, tags={**common, **dict(tags or {})}
    )


def find_step_run(ref: TrackingRef, step: str) -> Run | None:
    """The child run of ``step`` when one was opened, else None (nothing is created)."""
    return find_run(client(ref.uri), ref.experiment_id, {TOKEN_TAG: ref.token, STEP_TAG: step})


def finish(ref: TrackingRef, run_id: str, status: str = FINISHED) -> None:
    client(ref.uri).call("POST", "runs/update", {"run_id": run_id, "status": status, "end_time": now_ms()})


def open_children(ref: TrackingRef) -> list[Run]:
    """The runs of this pipeline run still RUNNING besides the pipeline run itself (a stage that failed)."""
    answer = client(ref.uri).call(
        "POST",
        "runs/search",
        {
            "experiment_ids": [ref.experiment_id],
            "filter": f"{_filter({TOKEN_TAG: ref.token})} and attributes.status = 'RUNNING'",
            "max_results": 1000,
        },
    )
    return [run for run in map(Run.from_answer, answer.get("runs") or []) if run.run_id != ref.run_id]


@dataclass(frozen=True)
class Metric:
    key: str
    value: float
    step: int = 0
    timestamp: int = 0


def log_batch(
    api: TrackingClient,
    run_id: str,
    *,
    metrics: Iterable[Metric] = (),
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> None:
    """Log metrics, params and tags in as few calls as MLflow's limits allow; non-finite metrics are left out."""
    stamp = now_ms()
    rows = [
        {"key": m.key, "value": float(m.value), "timestamp": m.timestamp or stamp, "step": int(m.step)}
        for m in metrics
        if math.isfinite(float(m.value))
    ]
    named = [("params", k, str(v)[:MAX_PARAM_LENGTH]) for k, v in (params or {}).items()]
    named += [("tags", k, str(v)[:MAX_TAG_LENGTH]) for k, v in (tags or {}).items()]
    while rows or named:
        chunk, named = named[:MAX_PARAMS_AND_TAGS_PER_CALL], named[MAX_PARAMS_AND_TAGS_PER_CALL:]
        room = min(MAX_METRICS_PER_CALL, MAX_ENTITIES_PER_CALL - len(chunk))
        body: dict[str, Any] = {"run_id": run_id, "metrics": rows[:room], "params": [], "tags": []}
        rows = rows[room:]
        for kind, key, value in chunk:
            body[kind].append({"key": key, "value": value})
        api.call("POST", "runs/log-batch", body)


def log(ref: TrackingRef, run_id: str, **values: Any) -> None:
    """:func:`log_batch` on the pipeline's tracking server."""
    log_batch(client(ref.uri), run_id, **values)


def tag_run(ref: TrackingRef, tags: Mapping[str, Any], step: str | None = None) -> None:
    """Set ``tags`` on the pipeline run, or on the run of ``step`` when it exists (later stages record cache hits,
    events and outcomes this way)."""
    run_id = ref.run_id
    if step is not None:
        run = find_step_run(ref, step)
        if run is None:
            raise ValueError(f"no {step} run was opened for pipeline run {ref.run_id}")
        run_id = run.run_id
    log(ref, run_id, tags=tags)


def run_url(ref: TrackingRef, run_id: str) -> str | None:
    """The MLflow UI page of a run (None when the UI is reached through Airflow's plugin: managed MLflow)."""
    return f"{ref.ui_url}/{run_fragment(ref, run_id)}" if ref.ui_url else None


def run_fragment(ref: TrackingRef, run_id: str) -> str:
    return f"#/experiments/{ref.experiment_id}/runs/{run_id}"


def page_url(ref: TrackingRef, fragment: str) -> str:
    """A browser URL of the MLflow UI at ``fragment`` (``#/...``): the UI's own, or a presigned one (managed MLflow)."""
    if ref.ui_url:
        return f"{ref.ui_url}/{fragment}"
    from include.tracking.uri import managed_ui_url

    return managed_ui_url(ref.uri, fragment)
