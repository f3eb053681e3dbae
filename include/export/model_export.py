"""The export stage: a trained model for other runtimes, recorded next to it in ``<run>/export/export.json``.

``onnx``: :func:`include.export.onnx_export.export_onnx`, then parity with the MXNet model on held-out
images (:mod:`include.export.parity`); a failed parity fails the stage after everything is recorded.
``neo``: the deployable graph compiled by SageMaker Neo for ``export.neo``'s target
(:mod:`include.export.neo`; backend ``sagemaker`` only). The DAG's ``export`` task and
``detection-pipeline export-model`` both call :func:`export_model`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from include import storage
from include.export.parity import ParityError, Tolerances, compare_models, summary_line
from include.run_layout import EXPORT_JSON

if TYPE_CHECKING:
    from include.configs import PipelineConfig
    from include.sagemaker.naming import RunIdentity

log = logging.getLogger(__name__)

FORMATS = ("onnx", "neo")


def read_export(export_uri: str) -> dict[str, Any]:
    """The record of an export folder (or its ``export.json``); ``FileNotFoundError`` when there is none."""
    target = export_uri if export_uri.endswith(".json") else storage.join(export_uri, EXPORT_JSON)
    if not storage.exists(target):
        raise FileNotFoundError(f"no export record at {storage.normalize(target)}: run the export first")
    return json.loads(storage.read_text(target))


def onnx_model_uri(export_uri: str) -> str:
    """The ``model.onnx`` an export folder recorded (what the ONNX Runtime endpoint serves)."""
    record = read_export(export_uri)
    if not record.get("onnx"):
        where = storage.normalize(export_uri)
        raise ValueError(f"the export at {where} has no ONNX model (formats: {', '.join(record['formats'])})")
    return record["onnx"]["uri"]


def _onnx(
    model_uri: str, output_uri: str, images: Iterable[tuple[str, np.ndarray]], tolerances: Tolerances
) -> dict[str, Any]:
    from include.export.onnx_export import export_onnx
    from include.model_artifact import load_detector
    from include.ssd_numpy import OnnxSsd

    record = export_onnx(model_uri, storage.join(output_uri, "onnx"))
    parity = compare_models(load_detector(model_uri), OnnxSsd(storage.read_bytes(record["uri"])), images, tolerances)
    log.info("parity: %s", summary_line(parity))
    return {**record, "parity": parity}


def _neo(cfg: PipelineConfig, run: RunIdentity, model_uri: str, output_uri: str) -> dict[str, Any]:
    from include.execution import COMPILATION, execute
    from include.export.neo import NEO_INPUT, neo_input_archive
    from include.sagemaker.requests import compilation_job_request

    neo = cfg.export.neo
    archive = neo_input_archive(model_uri, storage.join(output_uri, "neo", NEO_INPUT))
    request = compilation_job_request(
        name=run.name("neo"),
        role_arn=cfg.sagemaker.role_arn or "",
        input_uri=archive["uri"],
        image_shape=archive["image_shape"],
        output_uri=storage.join(output_uri, "neo", "compiled"),
        target_device=neo.target_device,
        target_platform=neo.target_platform,
        compiler_options=neo.compiler_options,
        max_runtime_seconds=neo.max_runtime_seconds,
        tags=run.tags(),
    )
    result = execute(COMPILATION, request, backend=cfg.backend, region=cfg.sagemaker.region)
    log.info("Neo compiled %s for %s: %s", model_uri, result["target"], result["compiled_artifact_uri"])
    return {**result, "input_uri": archive["uri"], "input_graph": archive["graph"], "request": request}


def export_model(
    cfg: PipelineConfig,
    model_uri: str,
    output_uri: str,
    *,
    run: RunIdentity,
    formats: Iterable[str],
    images: Iterable[tuple[str, np.ndarray]] = (),
    report_uri: str | None = None,
) -> dict[str, Any]:
    """Export ``model_uri`` in ``formats`` under ``output_uri``; ``export.json`` there, the section in ``report_uri``.

    The record is written even when a format fails (with the error), so what was done is never lost;
    then the error is raised. A parity failure raises :class:`ParityError`. Returns a small summary.
    """
    formats = list(dict.fromkeys(formats))
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise ValueError(f"export formats must be some of {', '.join(FORMATS)} (got {formats})")
    if "neo" in formats and cfg.backend != "sagemaker":
        raise ValueError("SageMaker Neo compiles on AWS only: export 'neo' with the sagemaker backend")
    e = cfg.export
    record: dict[str, Any] = {
        "model_uri": storage.normalize(model_uri),
        "formats": formats,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        if "onnx" in formats:
            record["onnx"] = _onnx(model_uri, output_uri, images, Tolerances(e.score_tolerance, e.box_tolerance))
            if not record["onnx"]["parity"]["passed"]:
                raise ParityError(f"the ONNX export fails parity: {summary_line(record['onnx']['parity'])}")
        if "neo" in formats:
            record["neo"] = _neo(cfg, run, model_uri, output_uri)
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        _write(record, output_uri, report_uri)
    return summary(record, storage.join(output_uri, EXPORT_JSON))


def _write(record: dict[str, Any], output_uri: str, report_uri: str | None) -> None:
    from include.evaluation.report import EXPORT_SECTION_ID, export_section, with_section

    storage.write_text(storage.join(output_uri, EXPORT_JSON), json.dumps(record, indent=2, default=str) + "\n")
    if report_uri:
        page = with_section(storage.read_text(report_uri), export_section(record), EXPORT_SECTION_ID)
        storage.write_text(report_uri, page)


def summary(record: dict[str, Any], export_uri: str) -> dict[str, Any]:
    """What the export stage hands on (XCom): where things are, and the parity figures."""
    out: dict[str, Any] = {"export_uri": storage.normalize(export_uri), "formats": record["formats"]}
    if "onnx" in record:
        parity = record["onnx"]["parity"]
        out.update(
            onnx_uri=record["onnx"]["uri"],
            onnx_sha256=record["onnx"]["sha256"],
            parity_passed=parity["passed"],
            parity_images=parity["images"],
            max_score_diff=parity["max_score_diff"],
            max_box_diff=parity["max_box_diff"],
        )
    if "neo" in record:
        out.update(neo_job_name=record["neo"]["job_name"], neo_artifact_uri=record["neo"]["compiled_artifact_uri"])
    return out
