"""Small XCom results of training, tuning, deployment, Neo compilation, processing and transform jobs, alike on
both backends.

Each is read from a description shaped as SageMaker's ``Describe*`` answer: the provider's operators
(and boto3) return the real ones, the local executors return dicts of the same shape, so one function
reads both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from include.sagemaker.training_metrics import final_metrics

#: The keys that name a job in a Describe*Job answer.
NAME_KEYS = (
    "TrainingJobName", "HyperParameterTuningJobName", "CompilationJobName", "ProcessingJobName", "TransformJobName"
)  # fmt: skip


class DescriptionError(ValueError):
    """A job description lacks what the result needs (names the job and the missing key)."""


def _get(description: Mapping[str, Any], *keys: str) -> Any:
    value: Any = description
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            name = next((description[k] for k in NAME_KEYS if description.get(k)), "?")
            raise DescriptionError(f"job {name}: description has no {'.'.join(keys)}")
        value = value[key]
    return value


def training_result(description: Mapping[str, Any], *, backend: str) -> dict[str, Any]:
    """``{"backend", "job_name", "status", "artifact_uri", "final_metrics", "hyperparameters"}`` of a training job."""
    return {
        "backend": backend,
        "job_name": _get(description, "TrainingJobName"),
        "status": _get(description, "TrainingJobStatus"),
        "artifact_uri": _get(description, "ModelArtifacts", "S3ModelArtifacts"),
        "final_metrics": final_metrics(description),
        "hyperparameters": dict(description.get("HyperParameters") or {}),
    }


def tuning_artifact_uri(output_path: str, training_job_name: str) -> str:
    """Where SageMaker puts a tuning job's training job's model: ``<S3OutputPath>/<job>/output/model.tar.gz``."""
    return f"{output_path.rstrip('/')}/{training_job_name}/output/model.tar.gz"


def tuning_result(description: Mapping[str, Any], *, backend: str) -> dict[str, Any]:
    """The tuning job's best training job as a training result, plus ``tuning_job_name`` and ``tuned_hyperparameters``.

    ``final_metrics`` holds the objective's final value; ``hyperparameters`` are the static ones
    with the best job's tuned values applied (what a final training job would be given), without
    the ``_``-prefixed ones SageMaker adds for tuning (``_tuning_objective_metric``).
    """
    best = _get(description, "BestTrainingJob")
    definition = _get(description, "TrainingJobDefinition")
    objective = best.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
    tuned = dict(best.get("TunedHyperParameters") or {})
    static = {k: v for k, v in (definition.get("StaticHyperParameters") or {}).items() if not k.startswith("_")}
    best_name = _get(best, "TrainingJobName")
    return {
        "backend": backend,
        "job_name": best_name,
        "status": best.get("TrainingJobStatus", ""),
        "artifact_uri": tuning_artifact_uri(_get(definition, "OutputDataConfig", "S3OutputPath"), best_name),
        "final_metrics": {objective["MetricName"]: float(objective["Value"])} if objective else {},
        "hyperparameters": {**static, **tuned},
        "tuning_job_name": _get(description, "HyperParameterTuningJobName"),
        "tuned_hyperparameters": tuned,
    }


def deployment_result(result: Mapping[str, Any], *, backend: str) -> dict[str, Any]:
    """``{"backend", "endpoint_name", "endpoint_config_name", "model_names", "status"}`` of a deployment.

    ``result`` holds DescribeEndpoint (``Endpoint``) and DescribeEndpointConfig (``EndpointConfig``)
    answers, as ``SageMakerEndpointOperator`` returns them; a local endpoint's answer adds its
    URL and server PID (``endpoint_url``, ``pid``).
    """
    endpoint = _get(result, "Endpoint")
    variants = _get(result, "EndpointConfig", "ProductionVariants")
    local = {
        key: endpoint[field]
        for key, field in (("endpoint_url", "EndpointUrl"), ("pid", "ServerPid"))
        if field in endpoint
    }
    return {
        "backend": backend,
        "endpoint_name": _get(endpoint, "EndpointName"),
        "endpoint_config_name": _get(endpoint, "EndpointConfigName"),
        "model_names": [variant["ModelName"] for variant in variants],
        "status": _get(endpoint, "EndpointStatus"),
        **local,
    }


def compilation_result(description: Mapping[str, Any], *, backend: str) -> dict[str, Any]:
    """What a SageMaker Neo compilation job produced (DescribeCompilationJob): the compiled model's URI first.

    The URI is taken from the answer (``ModelArtifacts.S3ModelArtifacts``), never built from the
    request's output location: Neo names the object itself.
    """
    output = _get(description, "OutputConfig")
    return {
        "backend": backend,
        "job_name": _get(description, "CompilationJobName"),
        "job_arn": description.get("CompilationJobArn"),
        "status": _get(description, "CompilationJobStatus"),
        "compiled_artifact_uri": _get(description, "ModelArtifacts", "S3ModelArtifacts"),
        "inference_image": description.get("InferenceImage"),
        "target": output.get("TargetDevice") or output.get("TargetPlatform"),
        "framework": (description.get("InputConfig") or {}).get("Framework"),
        "framework_version": (description.get("InputConfig") or {}).get("FrameworkVersion"),
    }


def processing_result(description: Mapping[str, Any], *, backend: str) -> dict[str, Any]:
    """A processing job's name, status and where its outputs were uploaded (DescribeProcessingJob)."""
    outputs = (description.get("ProcessingOutputConfig") or {}).get("Outputs", [])
    return {
        "backend": backend,
        "job_name": _get(description, "ProcessingJobName"),
        "status": _get(description, "ProcessingJobStatus"),
        "outputs": {o["OutputName"]: o["S3Output"]["S3Uri"] for o in outputs if "S3Output" in o},
    }


def transform_result(description: Mapping[str, Any], *, backend: str) -> dict[str, Any]:
    """A transform job's name, status, model, input and output (DescribeTransformJob), and ``counts`` (inputs,
    outputs, errors) where the record has them (the local executor's; on SageMaker the pipeline adds them after)."""
    source = _get(description, "TransformInput", "DataSource", "S3DataSource")
    return {
        "backend": backend,
        "job_name": _get(description, "TransformJobName"),
        "status": _get(description, "TransformJobStatus"),
        "model_name": description.get("ModelName"),
        "input_uri": source["S3Uri"],
        "input_type": source["S3DataType"],
        "output_uri": _get(description, "TransformOutput", "S3OutputPath"),
        "counts": dict(description.get("Counts") or {}),
    }
