"""The export stage: export.json next to the model, the report's section, parity as a gate, Neo on moto."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from include import storage
from include.configs import load_config
from include.execution import JobFailedError
from include.export.model_export import export_model, onnx_model_uri, read_export
from include.export.parity import ParityError
from include.sagemaker.naming import RunIdentity
from tests.support.aws_stand_ins import REGION, ROLE_ARN, CompilationStandIn

RUN = RunIdentity("object_detection_pipeline", "manual__2026-12-04T10:00:00", 2)
REPORT = "<!DOCTYPE html><html><body><main><section><h2>Summary</h2></section></main></body></html>\n"


def test_the_onnx_export_is_recorded_next_to_the_model_and_in_the_report(
    spread_artifact: str, bccd_images: list, tmp_path: Path
) -> None:
    report = tmp_path / "report.html"
    report.write_text(REPORT)
    cfg = load_config(params={"export": True})
    out = tmp_path / "export"
    for _ in range(2):  # a retried task rewrites the same files and the same one section
        summary = export_model(
            cfg, spread_artifact, str(out), run=RUN, formats=["onnx"], images=bccd_images[:4], report_uri=str(report)
        )
    record = read_export(str(out))
    assert summary["export_uri"] == storage.normalize(out / "export.json")
    assert (
        summary["onnx_uri"]
        == record["onnx"]["uri"]
        == onnx_model_uri(str(out))
        == storage.normalize(out / "onnx" / "model.onnx")
    )
    assert summary["parity_passed"] is True and summary["parity_images"] == 4
    assert record["model_uri"] == spread_artifact and record["formats"] == ["onnx"] and "error" not in record
    assert record["onnx"]["parity"]["unmatched"] == 0 and record["onnx"]["sha256"] == summary["onnx_sha256"]
    page = report.read_text()
    assert page.count('<section id="export">') == 1 and page.index("Summary") < page.index('id="export"')
    assert "ONNX Runtime gives same detections as MXNet on 4 held-out images" in page
    assert record["onnx"]["sha256"] in page


def test_failed_parity_fails_the_export_after_recording_why(
    spread_artifact: str, bccd_images: list, tmp_path: Path
) -> None:
    """Tolerances below float rounding (1e-9) make the runtimes' 1e-7 differences count as different detections."""
    report = tmp_path / "report.html"
    report.write_text(REPORT)
    cfg = load_config(params={"export": True}, overrides={"export": {"score_tolerance": 1e-9, "box_tolerance": 1e-9}})
    with pytest.raises(ParityError, match=r"fails parity: onnxruntime vs mxnet on 2 images: detections DIFFERENT"):
        export_model(
            cfg,
            spread_artifact,
            str(tmp_path / "export"),
            run=RUN,
            formats=["onnx"],
            images=bccd_images[:2],
            report_uri=str(report),
        )
    record = read_export(str(tmp_path / "export"))
    assert record["error"].startswith("ParityError") and record["onnx"]["parity"]["passed"] is False
    assert "different detections from MXNet" in report.read_text()


def test_neo_is_refused_on_the_local_backend(builtin_artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Neo compiles on AWS only"):
        export_model(load_config(), str(builtin_artifact), str(tmp_path), run=RUN, formats=["neo"])


def _sagemaker_export(bucket: str, artifact: Path) -> tuple[Any, str, str]:
    import boto3

    cfg = load_config(overrides={"backend": "sagemaker", "sagemaker": {"role_arn": ROLE_ARN, "bucket": bucket}})
    assert cfg.export.formats == ["neo"]  # the sagemaker profile's
    model_uri = f"s3://{bucket}/run/training/job/output/model.tar.gz"
    boto3.client("s3", region_name=REGION).upload_file(str(artifact), bucket, model_uri.split("/", 3)[3])
    return cfg, model_uri, f"s3://{bucket}/run/export"


def test_neo_compiles_the_builtin_models_deployable_graph_on_sagemaker(
    s3_bucket: str, builtin_artifact: Path, neo_jobs: CompilationStandIn
) -> None:
    import boto3

    cfg, model_uri, out = _sagemaker_export(s3_bucket, builtin_artifact)
    summary = export_model(cfg, model_uri, out, run=RUN, formats=cfg.export.formats)
    record = read_export(out)
    neo = record["neo"]
    job = boto3.client("sagemaker", region_name=REGION).describe_compilation_job(CompilationJobName=neo["job_name"])
    # the compiled model's URI is the one SageMaker answered, recorded with the model and handed on
    assert summary["neo_artifact_uri"] == neo["compiled_artifact_uri"] == job["ModelArtifacts"]["S3ModelArtifacts"]
    assert neo["job_name"] == RUN.name("neo") and neo["status"] == "COMPLETED" and neo["target"] == "ml_c5"
    assert job["InputConfig"]["S3Uri"] == neo["input_uri"] == f"{out}/neo/neo-input.tar.gz"
    assert storage.exists(neo["input_uri"]) and neo["input_graph"] == "builtin-training"
    assert json.loads(job["InputConfig"]["DataInputConfig"]) == {"data": [1, 3, 64, 64]}
    assert (job["InputConfig"]["Framework"], job["InputConfig"]["FrameworkVersion"]) == ("MXNET", "1.8")
    assert job["OutputConfig"]["S3OutputLocation"] == f"{out}/neo/compiled" and job["RoleArn"] == ROLE_ARN
    tags = boto3.client("sagemaker", region_name=REGION).list_tags(ResourceArn=job["CompilationJobArn"])["Tags"]
    assert {"Key": "detection-run-token", "Value": RUN.token} in tags
    assert neo_jobs.stopped == []


def test_a_failed_compilation_fails_the_export_with_its_reason(
    s3_bucket: str, builtin_artifact: Path, neo_jobs: CompilationStandIn
) -> None:
    cfg, model_uri, out = _sagemaker_export(s3_bucket, builtin_artifact)
    neo_jobs.status, neo_jobs.reason = "FAILED", "ClientError: InputConfiguration: unsupported operator"
    with pytest.raises(JobFailedError, match="FAILED: ClientError: InputConfiguration: unsupported operator"):
        export_model(cfg, model_uri, out, run=RUN, formats=["neo"])
    assert "unsupported operator" in read_export(out)["error"] and neo_jobs.stopped == []


def test_an_interrupted_wait_stops_the_compilation_job(
    s3_bucket: str, builtin_artifact: Path, neo_jobs: CompilationStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    import include.execution

    cfg, model_uri, out = _sagemaker_export(s3_bucket, builtin_artifact)
    neo_jobs.status = "INPROGRESS"

    def interrupted(_: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(include.execution.time, "sleep", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_model(cfg, model_uri, out, run=RUN, formats=["neo"])
    assert neo_jobs.stopped == [RUN.name("neo")]


def test_teardown_stops_the_runs_compilation_jobs_still_running(
    s3_bucket: str, builtin_artifact: Path, neo_jobs: CompilationStandIn
) -> None:
    import boto3

    from include.sagemaker.client import stop_run_jobs

    sm = boto3.client("sagemaker", region_name=REGION)
    _, _, out = _sagemaker_export(s3_bucket, builtin_artifact)
    request = {
        "RoleArn": ROLE_ARN, "InputConfig": {"S3Uri": f"{out}/neo/neo-input.tar.gz", "Framework": "MXNET",
                                            "DataInputConfig": '{"data": [1, 3, 64, 64]}', "FrameworkVersion": "1.8"},
        "OutputConfig": {"S3OutputLocation": f"{out}/neo/compiled", "TargetDevice": "ml_c5"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 900},
    }  # fmt: skip
    neo_jobs.status = "INPROGRESS"
    sm.create_compilation_job(CompilationJobName=RUN.name("neo"), **request)
    sm.create_compilation_job(CompilationJobName="neo-another-run-t1", **request)
    neo_jobs.status = None
    sm.create_compilation_job(CompilationJobName=RUN.name("neo", attempt=1), **request)  # done already
    assert stop_run_jobs(sm, RUN.token) == [RUN.name("neo")] == neo_jobs.stopped
    assert sm.describe_compilation_job(CompilationJobName=RUN.name("neo"))["CompilationJobStatus"] == "STOPPING"
