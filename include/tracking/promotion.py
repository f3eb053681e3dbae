"""The promotion gate and the approval, on the registry: what they read, register, move and record.

The gate (:func:`gate`) registers every evaluated model as a version, compares it with the
``champion`` version (:func:`include.evaluation.promotion.decide_promotion`) and, for a winner
on the sagemaker backend, creates its model package pending approval. The approval
(:func:`record_approval`: a person in the Airflow UI, ``promotion.approval: auto``, or
``detection-pipeline promote``) moves the aliases and approves or rejects the package. Both leave
their decision on the version (tags) and on the pipeline run (``promotion.*`` / ``approval.*`` tags).

A version carries what was made from its model too: the run's export (``export.json``: the ONNX
file with its SHA-256 and parity figures, the Neo compiled model), as ``detection.export.*`` tags
(:func:`export_tags`), so the registry says which ONNX file and compiled model belong to the champion.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from include import storage
from include.evaluation.promotion import decide_promotion
from include.tracking.records import record_event
from include.tracking.registry import (
    APPROVAL_TAG,
    BASELINE_TAG,
    CHAMPION,
    COCO_TAG,
    MAP_TAG,
    MODEL_DATA_TAG,
    SPLIT_TAG,
    ModelVersion,
    Registry,
)
from include.tracking.runs import TrackingRef, client

if TYPE_CHECKING:
    from include.configs import PipelineConfig

PACKAGE_TAG = "detection.model_package_arn"
#: Version tags of the run's export (``detection.export.onnx_sha256``, ...).
EXPORT_PREFIX = "detection.export."
PENDING, APPROVED, REJECTED, NOT_REQUESTED = "pending", "approved", "rejected", "not requested"


def _champion(registry: Registry) -> tuple[ModelVersion | None, str | None]:
    lookup = registry.lookup(CHAMPION)
    return lookup.version, lookup.note


def _pipeline_tags(ref: TrackingRef) -> dict[str, str]:
    run = client(ref.uri).call("GET", "runs/get", params={"run_id": ref.run_id})["run"]
    return {t["key"]: t.get("value", "") for t in (run.get("data") or {}).get("tags", [])}


def _as_champion(version: ModelVersion | None) -> dict[str, Any] | None:
    """What the gate and the approval form need of the champion version."""
    if version is None:
        return None
    return {
        "version": version.version,
        "map": version.score,
        "split": version.score_split,
        "coco_map": version.tags.get(COCO_TAG),
    }


def export_tags(export_uri: str | None) -> dict[str, str]:
    """The version tags of a run's export (``export.json``): where it is, the ONNX file's URI, SHA-256 and parity
    figures, the Neo compilation's job and compiled model; none when the run exported nothing."""
    if not export_uri or not storage.exists(export_uri):
        return {}
    from include.export.model_export import read_export

    record = read_export(export_uri)
    tags = {"uri": storage.normalize(export_uri), "formats": ",".join(record.get("formats", []))}
    if onnx := record.get("onnx"):
        parity = onnx.get("parity") or {}
        tags |= {
            "onnx_uri": onnx["uri"],
            "onnx_sha256": onnx["sha256"],
            "parity": "passed" if parity.get("passed") else "failed",
            "parity_images": str(parity.get("images", "")),
            "parity_max_score_diff": f"{parity.get('max_score_diff', float('nan')):.3g}",
            "parity_max_box_diff": f"{parity.get('max_box_diff', float('nan')):.3g}",
        }
    if neo := record.get("neo"):
        tags |= {
            "neo_job_name": neo.get("job_name", ""),
            "neo_model_uri": neo.get("compiled_artifact_uri", ""),
            "neo_target": str(neo.get("target", "")),
        }
    return {EXPORT_PREFIX + key: value for key, value in tags.items()}


def model_version_url(ref: TrackingRef, version: int) -> str | None:
    """The MLflow UI page of a version (None when the UI is reached through Airflow)."""
    return f"{ref.ui_url}/#/models/{ref.registered_model}/versions/{version}" if ref.ui_url else None


def gate(
    cfg: PipelineConfig,
    ref: TrackingRef,
    evaluation: dict[str, Any],
    training: dict[str, Any],
    export_uri: str | None = None,
) -> dict[str, Any]:
    """Register the evaluated model (with the run's export at ``export_uri``, when there is one) and decide
    whether it should replace the champion (see the module doc).

    Returns ``{"promote", "reason", "note", "version", "champion", "model_package_arn", ...}``.
    """
    tracked = training.get("tracking") or {}
    if not tracked.get("model_source"):
        raise ValueError(
            f"training result of job {training.get('job_name')} carries no tracked model: "
            "it was not recorded (stages.track_training)"
        )
    registry = Registry(ref.uri, ref.registered_model)
    champion, note = _champion(registry)
    if champion is not None and champion.score is None:
        decision = {
            "promote": False,
            "reason": f"the champion (version {champion.version}) records no {MAP_TAG} to compare with; "
            "promote this run's version by hand if wanted (detection-pipeline promote)",
        }
    else:
        decision = decide_promotion(evaluation, cfg.evaluation.promotion_threshold, _as_champion(champion))
    if note:
        decision["reason"] += f"; note: {note}"
    exported = export_tags(export_uri)
    version = registry.register(  # with every tag at once: one request
        tracked["model_source"],
        tracked["run_id"],
        {
            MAP_TAG: evaluation["map"],
            SPLIT_TAG: evaluation.get("split", ""),
            COCO_TAG: evaluation["coco_map"],
            MODEL_DATA_TAG: training["artifact_uri"],
            "detection.training_run_id": tracked["run_id"],
            "detection.pipeline_run_id": ref.run_id,
            "detection.airflow_run_id": ref.airflow_run_id,
            "detection.dag_id": ref.dag_id,
            "detection.job_name": training["job_name"],
            "detection.data_digest": _pipeline_tags(ref).get("detection.data_digest", ""),
            "detection.evaluation_uri": evaluation["evaluation_uri"],
            "detection.report_uri": evaluation["report_uri"],
            "detection.gate": "promote" if decision["promote"] else "hold",
            "detection.gate_reason": decision["reason"],
            APPROVAL_TAG: PENDING if decision["promote"] else NOT_REQUESTED,
            **exported,
            **({BASELINE_TAG: evaluation["monitoring_baseline_uri"]} if evaluation.get("monitoring_baseline_uri")
               else {}),  # fmt: skip
        },
        description=f"{training['job_name']} (run {ref.airflow_run_id}): {_figure_name(evaluation)} "
        f"{evaluation['map']:.4f}",
    )
    package = None
    if decision["promote"] and cfg.backend == "sagemaker":
        package = _model_package(
            cfg, ref.registered_model, version, evaluation["evaluation_uri"], evaluation["model_uri"]
        )
        registry.tag_version(version.version, {PACKAGE_TAG: package})
    record_event(
        ref,
        "promotion",
        {
            "version": version.version,
            "promote": decision["promote"],
            "reason": decision["reason"],
            "champion": "none" if champion is None else champion.version,
        },
    )
    return {
        **decision,
        "champion": _as_champion(champion),
        "note": note,
        "registered_model": ref.registered_model,
        "version": version.version,
        "version_url": model_version_url(ref, version.version),
        "map": evaluation["map"],
        "split": evaluation.get("split", ""),
        "coco_map": evaluation["coco_map"],
        "model_package_arn": package,
        "export": {key.removeprefix(EXPORT_PREFIX): value for key, value in exported.items()},
        "approval": cfg.promotion.approval,
    }


def _figure_name(evaluation: dict[str, Any]) -> str:
    """``test mAP`` (or ``validation mAP``): the gate's figure, named by the split it was measured on."""
    return f"{evaluation.get('split') or ''} mAP".strip()


def _model_package(
    cfg: PipelineConfig, registered_model: str, version: ModelVersion, evaluation_uri: str, model_data_url: str
) -> str:
    """The SageMaker model package of ``version``, pending approval (created once, with its group)."""
    from include.sagemaker import model_packages as mp
    from include.sagemaker.client import sagemaker_client
    from include.sagemaker.naming import RunIdentity
    from include.sagemaker.requests import builtin_image

    region = cfg.sagemaker.region
    group = mp.group_name(registered_model)
    dag_id = version.tags.get("detection.dag_id") or registered_model
    airflow_run_id = version.tags.get("detection.airflow_run_id") or "unknown"
    tags = RunIdentity(dag_id, airflow_run_id, 1).tags()
    figure = f"{version.score_split or ''} mAP {version.score:.4f}".strip()
    request = mp.package_request(
        group=group,
        model_data_url=model_data_url,
        image=builtin_image(region),
        instance_type=cfg.sagemaker.endpoint_instance_type,
        evaluation_uri=evaluation_uri,
        evaluation_bytes=storage.read_bytes(evaluation_uri),
        metadata={
            mp.VERSION_KEY: version.version,
            "mlflow_run_id": version.run_id,
            "map": f"{version.score:.4f}",
            "map_split": version.score_split or "unknown",
            "airflow_run_id": airflow_run_id,
        },
        description=f"{registered_model} version {version.version}: {figure}",
        project=dag_id,
        generated_by=f"airflow:{dag_id}/{airflow_run_id}",
        tags=tags,
    )
    group_request = mp.group_request(group, f"Models of the {dag_id} pipeline (MLflow: {registered_model})", tags)
    return mp.ensure_package(sagemaker_client(region), group_request, request)


def promote_version(
    cfg: PipelineConfig, uri: str, registered_model: str, number: int, *, by: str, reason: str
) -> dict[str, Any]:
    """Approve version ``number`` by hand (``detection-pipeline promote``): it becomes champion; on the sagemaker
    backend its model package (created now when the gate never made one) is approved."""
    version = Registry(uri, registered_model).version(number)
    package = version.tags.get(PACKAGE_TAG)
    if cfg.backend == "sagemaker" and not package:
        evaluation_uri = version.tags.get("detection.evaluation_uri")
        if not evaluation_uri or version.score is None:
            raise ValueError(
                f"version {number} of {registered_model!r} records no evaluation "
                f"(detection.evaluation_uri, {MAP_TAG}): no model package can be made for it"
            )
        package = _model_package(cfg, registered_model, version, evaluation_uri, version.model_data_url)
        Registry(uri, registered_model).tag_version(number, {PACKAGE_TAG: package})
    decision = {"version": number, "registered_model": registered_model, "model_package_arn": package}
    return record_approval(cfg, None, decision, approved=True, by=by, reason=reason, uri=uri)


def approval_request(
    ref: TrackingRef, decision: dict[str, Any], evaluation: dict[str, Any], timeout_minutes: float
) -> dict[str, str]:
    """The subject and Markdown body of the approval form: the figures side by side, the gate's reason, links."""
    champion = decision.get("champion")

    def figure(value: Any) -> str:
        return "-" if value in (None, "") else f"{float(value):.4f}"

    held = "no champion yet" if champion is None else f"version {champion['version']}"
    what = _figure_name(evaluation)
    best = figure(champion and champion.get("map"))
    if champion and champion.get("split") and champion["split"] != evaluation.get("split"):
        best += f" ({champion['split']})"
    rows = [
        "| | challenger | champion |",
        "|---|---|---|",
        f"| version | {decision['version']} | {held} |",
        f"| {what} (VOC, IoU 0.5) | {figure(evaluation['map'])} | {best} |",
        f"| COCO mAP (IoU 0.5:0.95) | {figure(evaluation['coco_map'])} | "
        f"{figure(champion and champion.get('coco_map'))} |",
    ]
    links = [f"[model version in MLflow]({decision['version_url']})"] if decision.get("version_url") else []
    export = decision.get("export") or {}
    made = []
    if export.get("onnx_sha256"):
        made.append(
            f"ONNX `{export['onnx_sha256'][:16]}…`, parity with MXNet {export['parity']} on {export['parity_images']} "
            f"images (max score diff {export['parity_max_score_diff']}, box {export['parity_max_box_diff']})"
        )
    if export.get("neo_model_uri"):
        made.append(f"Neo-compiled for {export['neo_target']}: `{export['neo_model_uri']}`")
    package = " and approves its SageMaker model package" if decision.get("model_package_arn") else ""
    body = "\n".join(
        [
            f"**{ref.registered_model}**, run `{ref.airflow_run_id}`",
            "",
            *rows,
            "",
            f"**Promotion gate:** {decision['reason']}.",
            *([f"**Export:** {'; '.join(made)}.", ""] if made else [""]),
            " · ".join(links),
            "",
            f"**Approve** makes version {decision['version']} `champion` (the current champion becomes `previous`)"
            f"{package}, and the run deploys it. **Reject** keeps the champion and records your reason. No answer "
            f"within {timeout_minutes:g} minutes counts as a rejection.",
        ]
    )
    against = "no champion yet" if champion is None else f"the champion's {figure(champion.get('map'))}"
    subject = (
        f"Promote version {decision['version']} of {ref.registered_model}? {what} {figure(evaluation['map'])}, "
        f"{against}"
    )
    return {"subject": subject, "body": body}


def record_approval(
    cfg: PipelineConfig,
    ref: TrackingRef | None,
    decision: dict[str, Any],
    *,
    approved: bool,
    by: str,
    reason: str,
    uri: str | None = None,
) -> dict[str, Any]:
    """Apply an approval of ``decision['version']`` (see the module doc); returns what was done.

    ``ref`` is the pipeline run to record it on (None from the CLI: then ``uri`` and
    ``decision['registered_model']`` name the registry).
    """
    registry = Registry(ref.uri if ref else uri or "", ref.registered_model if ref else decision["registered_model"])
    number = int(decision["version"])
    move = registry.set_champion(number, action="approve", by=by, reason=reason) if approved else None
    registry.tag_version(
        number,
        {
            APPROVAL_TAG: APPROVED if approved else REJECTED,
            "detection.approved_by": by,
            "detection.approval_reason": reason,
        },
    )
    package = decision.get("model_package_arn")
    if package is None and cfg.backend == "sagemaker":  # approved by hand: the package the gate may have made
        package = registry.version(number).tags.get(PACKAGE_TAG)
    if package:
        from include.sagemaker.client import sagemaker_client
        from include.sagemaker.model_packages import APPROVED as PACKAGE_APPROVED
        from include.sagemaker.model_packages import REJECTED as PACKAGE_REJECTED
        from include.sagemaker.model_packages import set_approval

        set_approval(
            sagemaker_client(cfg.sagemaker.region),
            package,
            PACKAGE_APPROVED if approved else PACKAGE_REJECTED,
            f"{by}: {reason}",
        )
    if ref is not None:
        outcome = {"decision": APPROVED if approved else REJECTED, "by": by, "reason": reason, "version": number}
        record_event(ref, "approval", outcome, {"detection.champion_version": number} if approved else None)
    return {
        "approved": approved,
        "version": number,
        "by": by,
        "reason": reason,
        "model_package_arn": package,
        "replaced": move["replaced"] if move else None,
    }
