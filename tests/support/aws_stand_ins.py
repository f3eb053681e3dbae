"""Stand-ins for the SageMaker calls moto (5.2) lacks, and the test constants.

moto has no StopTrainingJob / StopHyperParameterTuningJob / StopTransformJob / StopCompilationJob, creates jobs already
``Completed`` and cannot take a binary InvokeEndpoint body. :class:`StopStandIn` answers those two calls the
way SageMaker does (and changes moto's state accordingly); :func:`start_in_progress` leaves new
jobs ``InProgress`` as SageMaker does; :class:`InvokeStandIn` takes image bodies and answers from
moto's own results queue. They are botocore event handlers, so every client (the provider's hooks included) goes
through them, in-process or against moto's server; nothing of the code under test is replaced.
"""

from __future__ import annotations

import io
import json
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"
BUCKET = "detection-test-bucket"


def _backend() -> Any:
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[ACCOUNT][REGION]


def set_training_status(name: str, status: str) -> None:
    """Put moto's training job ``name`` in ``status`` (moto completes every job at once)."""
    _backend().training_jobs[name].training_job_status = status


def _answer(status: int, parsed: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from botocore.awsrequest import AWSResponse

    parsed = {**parsed, "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": 0}}
    return AWSResponse("https://sagemaker.stand-in", status, {}, None), parsed


STOPS = {
    "StopTrainingJob": ("TrainingJobName", "training_jobs", "training_job_status"),
    "StopHyperParameterTuningJob": (
        "HyperParameterTuningJobName",
        "hyper_parameter_tuning_jobs",
        "hyper_parameter_tuning_job_status",
    ),
    "StopTransformJob": ("TransformJobName", "transform_jobs", "transform_job_status"),
}


class StopStandIn:
    """Answers Stop* like SageMaker: stops an InProgress job, else ValidationException / ResourceNotFound."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        key, table, status_attr = STOPS[model.name]
        name = json.loads(params["body"])[key]  # ``params`` is the serialized request (SageMaker speaks JSON)
        self.calls.append((model.name, name))
        job = getattr(_backend(), table).get(name)
        if job is None:
            return _answer(400, {"Error": {"Code": "ResourceNotFound", "Message": f"Could not find job {name}"}})
        status = getattr(job, status_attr)
        if status != "InProgress":
            message = f"The request was rejected because the job is in status {status}."
            return _answer(400, {"Error": {"Code": "ValidationException", "Message": message}})
        setattr(job, status_attr, "Stopped")
        return _answer(200, {})


def start_in_progress(parsed: dict[str, Any], model: Any, **_: Any) -> None:
    """After CreateTrainingJob / CreateHyperParameterTuningJob / CreateTransformJob: the new job runs (SageMaker's
    first state)."""
    arn_key, table, status_attr = {
        "CreateTransformJob": ("TransformJobArn", "transform_jobs", "transform_job_status"),
        "CreateTrainingJob": ("TrainingJobArn", "training_jobs", "training_job_status"),
        "CreateHyperParameterTuningJob": (
            "HyperParameterTuningJobArn",
            "hyper_parameter_tuning_jobs",
            "hyper_parameter_tuning_job_status",
        ),
    }[model.name]
    if arn_key in parsed:
        setattr(getattr(_backend(), table)[parsed[arn_key].rsplit("/", 1)[-1]], status_attr, "InProgress")


class CompilationStandIn:
    """Neo on moto: a new compilation job takes :attr:`status` and :attr:`reason` when set (moto completes jobs
    at once); StopCompilationJob, which moto lacks, stops a running job as SageMaker does, and is recorded."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.reason = ""
        self.stopped: list[str] = []

    def created(self, parsed: dict[str, Any], **_: Any) -> None:
        if self.status and "CompilationJobArn" in parsed:
            job = _backend().compilation_jobs[parsed["CompilationJobArn"].rsplit("/", 1)[-1]]
            job.compilation_job_status, job.failure_reason = self.status, self.reason

    def stop(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        name = json.loads(params["body"])["CompilationJobName"]
        job = _backend().compilation_jobs.get(name)
        if job is None:
            return _answer(400, {"Error": {"Code": "ResourceNotFound", "Message": f"Could not find job {name}"}})
        if job.compilation_job_status not in ("STARTING", "INPROGRESS"):
            message = f"The request was rejected because the job is in status {job.compilation_job_status}."
            return _answer(400, {"Error": {"Code": "ValidationException", "Message": message}})
        job.compilation_job_status = "STOPPING"
        self.stopped.append(name)
        return _answer(200, {})


class InvokeStandIn:
    """InvokeEndpoint with a binary body (moto 5.2 decodes request bodies as UTF-8 and fails on images).

    Answers from moto's own sagemaker-runtime results queue (filled through moto's API, as for
    moto's InvokeEndpoint) after SageMaker's checks: the endpoint exists and is InService.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, int]] = []

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        import hashlib
        from urllib.parse import unquote

        from botocore.response import StreamingBody
        from moto.sagemakerruntime.models import sagemakerruntime_backends

        name = unquote(params["url_path"].split("/")[2])
        body = params["body"] if isinstance(params["body"], bytes) else params["body"].read()
        self.requests.append((name, params["headers"]["Content-Type"], len(body)))
        endpoint = _backend().endpoints.get(name)
        if endpoint is None or endpoint.endpoint_status != "InService":
            message = f"Endpoint {name} of account {ACCOUNT} not found."
            return _answer(400, {"Error": {"Code": "ValidationError", "Message": message}})
        answer, content_type, variant, _attributes = sagemakerruntime_backends[ACCOUNT][REGION].invoke_endpoint(
            endpoint_name=name, unique_repr=hashlib.sha256(body).hexdigest().encode()
        )
        data = answer.encode()
        return _answer(
            200,
            {
                "Body": StreamingBody(io.BytesIO(data), len(data)),
                "ContentType": content_type,
                "InvokedProductionVariant": variant,
            },
        )


class UpdateEndpointStandIn:
    """UpdateEndpoint, which moto lacks, answered as SageMaker does once the update has ended.

    Success: the endpoint serves the new config (its variants), ``LastDeploymentConfig`` is what was sent.
    :attr:`rollback` set plays an alarm-triggered automatic rollback: the endpoint is back InService on
    its old config, with SageMaker's ``FailureReason``. Every request is kept in :attr:`requests`.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.rollback = False

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        request = json.loads(params["body"])
        self.requests.append(request)
        backend = _backend()
        endpoint = backend.endpoints.get(request["EndpointName"])
        config = backend.endpoint_configs.get(request["EndpointConfigName"])
        if endpoint is None or config is None:
            message = f"Could not find endpoint or endpoint configuration in {request}"
            return _answer(400, {"Error": {"Code": "ValidationException", "Message": message}})
        if "DeploymentConfig" in request:
            endpoint.last_deployment_config = request["DeploymentConfig"]
        if self.rollback:
            watched = request["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
            alarms = ", ".join(a["AlarmName"] for a in watched)
            endpoint.failure_reason = f"Update rolled back: CloudWatch alarm(s) {alarms} in ALARM state during baking."
        else:
            endpoint.endpoint_config_name = request["EndpointConfigName"]
            endpoint.production_variants = endpoint._process_production_variants(config.production_variants)
            endpoint.failure_reason = None
        endpoint.endpoint_status = "InService"
        return _answer(200, {"EndpointArn": endpoint.arn})


class TrialListStandIn:
    """ListTrainingJobsForHyperParameterTuningJob, which moto lacks, answered from moto's own jobs as SageMaker does.

    A tuning job's trials are moto's training jobs named ``<tuning job>-<NNN>-<8 hex>`` (SageMaker's naming);
    each is summarised with its tuned values (the hyperparameters the tuning job's ranges name), status,
    and the objective's final value from its FinalMetricDataList. Pages hold at most :attr:`per_page` trials
    (SageMaker may return fewer than MaxResults) and carry a NextToken; every request is kept in :attr:`requests`.
    :meth:`finish` makes moto's tuning job report its real best trial instead of moto's canned one.
    """

    def __init__(self, per_page: int = 2) -> None:
        self.per_page = per_page
        self.requests: list[dict[str, Any]] = []

    @staticmethod
    def summaries(tuning_job_name: str) -> list[dict[str, Any]]:
        backend = _backend()
        tuning = backend.hyper_parameter_tuning_jobs[tuning_job_name]
        config = tuning.hyper_parameter_tuning_job_config
        objective = config["HyperParameterTuningJobObjective"]
        tuned = {r["Name"] for ranges in config["ParameterRanges"].values() for r in ranges}
        out = []
        for name, job in sorted(backend.training_jobs.items()):
            if not name.startswith(f"{tuning_job_name}-"):
                continue
            value = next((m["Value"] for m in job.final_metric_data_list if m["MetricName"] == objective["MetricName"]),
                         None)  # fmt: skip
            summary = {
                "TrainingJobName": name,
                "TrainingJobArn": job.arn,
                "TuningJobName": tuning_job_name,
                "CreationTime": job.creation_time,
                "TrainingStartTime": job.training_start_time,
                "TrainingEndTime": job.training_end_time,
                "TrainingJobStatus": job.training_job_status,
                "TunedHyperParameters": {k: v for k, v in job.hyper_parameters.items() if k in tuned},
                "ObjectiveStatus": "Succeeded" if value is not None else "Failed",
            }
            if value is not None:
                summary["FinalHyperParameterTuningJobObjectiveMetric"] = {**objective, "Value": value}
            if getattr(job, "failure_reason", None):
                summary["FailureReason"] = job.failure_reason
            out.append(summary)
        return out

    def finish(self, tuning_job_name: str) -> dict[str, Any]:
        """Make moto's tuning job report its best trial (highest objective); returns that trial's summary."""
        done = [s for s in self.summaries(tuning_job_name) if s["ObjectiveStatus"] == "Succeeded"]
        best = max(done, key=lambda s: s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])
        _backend().hyper_parameter_tuning_jobs[tuning_job_name].best_training_job = best
        return best

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        request = json.loads(params["body"])
        self.requests.append(request)
        name = request["HyperParameterTuningJobName"]
        if name not in _backend().hyper_parameter_tuning_jobs:
            message = f"Amazon SageMaker can't find a tuning job named {name}."
            return _answer(400, {"Error": {"Code": "ResourceNotFound", "Message": message}})
        start = int(request.get("NextToken") or 0)
        size = min(self.per_page, int(request.get("MaxResults") or 10))
        trials = self.summaries(name)
        page: dict[str, Any] = {"TrainingJobSummaries": trials[start : start + size]}
        if start + size < len(trials):
            page["NextToken"] = str(start + size)
        return _answer(200, page)
