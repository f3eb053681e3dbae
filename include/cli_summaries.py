"""What each ``detection-pipeline`` command tells a person when it ends: a few lines and the exact next command.

The CLI prints these on stderr; the machine-readable result stays behind ``--json`` (stdout).
Each summary is a function of the command's arguments and its result, so what it says is what
happened; the next command it prints uses the paths the user gave, and a test parses every one
of them with the CLI's own parser.
"""

from __future__ import annotations

import argparse
import posixpath
from collections.abc import Callable, Mapping
from typing import Any

CLI = "detection-pipeline"

Summary = Callable[[argparse.Namespace, Any], list[str]]


def sibling(path: str, name: str) -> str:
    """``path``'s sibling folder ``name`` (``/tmp/bccd/ingest`` -> ``/tmp/bccd/quality``), as the user wrote it."""
    trimmed = path.rstrip("/")
    parent = posixpath.dirname(trimmed)
    return posixpath.join(parent, name) if parent else name


def _splits(counts: Mapping[str, Mapping[str, int]], key: str) -> str:
    return ", ".join(f"{split} {c[key]}" for split, c in counts.items() if c.get(key))


def ingest(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    sources = r.get("split_source") or {}
    drawn = [f"{s} {how}" for s, how in sources.items() if how != "data set"]
    lines = [
        f"ingested {r['images']} images, {r['boxes']} boxes, {r['classes']} classes into {args.output}",
        f"images per split: {_splits(r['splits'], 'images')}" + (f" ({'; '.join(drawn)})" if drawn else ""),
    ]
    if r.get("issues"):
        lines.append(f"{r['issues']} issue(s) set aside ({r['uris']['issues']}); the quality gate reports them")
    out = sibling(args.output, "quality")
    lines.append(f"next: {CLI} validate --input {args.output} --output {out}")
    return lines


def validate(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    dropped = r.get("rows_dropped") or 0
    verdict = (
        f"passed after dropping {dropped} boxes ({r['images_dropped']} images left with none)"
        if dropped
        else ("passed")
    )
    return [
        f"quality gate {verdict} (policy {r['policy']}): {r['images']} images, {r['boxes']} boxes kept",
        f"report: {r['uris']['quality_html']}",
        f"next: {CLI} build-recordio --input {args.output} --output {sibling(args.output, 'recordio')}",
    ]


def build_recordio(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    records = ", ".join(f"{split} {n}" for split, n in r["records"].items())
    lines = [f"RecordIO channels in {args.output}: {records} records"]
    if "test" not in r["records"]:
        lines.append("no test channel: evaluation will score validation, the data that selects the epoch")
    lines.append(f"next: {CLI} train --input {args.output} --output {sibling(args.output, 'training')}")
    return lines


def _best(record: Mapping[str, Any]) -> str:
    best = record.get("BestValidationMAP")
    return f"; best validation mAP {best:.4f} at epoch {record.get('BestEpoch')}" if best is not None else ""


def _started_from(record: Mapping[str, Any]) -> list[str]:
    """What the model started from (the report's "Start weights"): the ImageNet file, or why it had none."""
    from include.evaluation.training_run import start_weights

    start = start_weights(dict(record))
    if not start:
        return []
    line = f"started from {start['started from']}"
    if start.get("file"):
        line += f": {start['file']} (sha256 {str(start.get('sha256'))[:12]}...)"
    if start.get("why"):
        line += f": {start['why']}"
    return [line]


def train(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    started_from: list[str] = []
    if "HyperParameterTuningJobName" in r:
        best = r.get("BestTrainingJob") or {}
        metric = (best.get("FinalHyperParameterTuningJobObjectiveMetric") or {}).get("Value")
        objective = f" (validation mAP {metric:.4f})" if metric is not None else ""
        head = (
            f"tuning job {r['HyperParameterTuningJobName']} {r['HyperParameterTuningJobStatus']}: best trial "
            f"{best.get('TrainingJobName', '-')}{objective}"
        )
    else:
        head = f"training job {r['TrainingJobName']} {r['TrainingJobStatus']}{_best(r)}"
        started_from = _started_from(r)
    model = (r.get("ModelArtifacts") or {}).get("S3ModelArtifacts", "-")
    evaluation = sibling(args.output, "evaluation")
    return [
        head,
        *started_from,
        f"model: {model}",
        f"next: {CLI} evaluate --input {args.output} --data {args.input} --output {evaluation}",
    ]


def evaluate(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    split = r.get("split", "test")
    lines = [f"{split} mAP@{r['iou']:g} {r['map']:.4f}, COCO mAP {r['coco_map']:.4f} on {r['images']} {split} images"]
    lines += [f"note: {note}" for note in r.get("notes", [])]
    threshold = r.get("promotion_threshold")
    if threshold is not None:
        verdict = "meets" if r["map"] >= threshold else "is below"
        lines.append(f"promotion: {split} mAP {r['map']:.4f} {verdict} the threshold {threshold:g}")
    lines.append(f"report: {r['report_uri']}")
    lines.append(f"next: {CLI} deploy --input {args.input} --name my-detector")
    return lines


def export_model(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    record, lines = r["record"], []
    if "onnx" in record:
        lines.append(f"onnx: {record['onnx']['uri']} (sha256 {record['onnx']['sha256'][:16]}...)")
        lines.append(f"parity: {r['parity_line']}")
    if "neo" in record:
        lines.append(f"neo: {record['neo']['compiled_artifact_uri']} ({record['neo']['job_name']})")
    if "onnx" in record:
        lines.append(f"next: {CLI} deploy --input {args.output} --runtime onnxruntime --name my-detector")
    return lines


def deploy(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    where = f" at {r['endpoint_url']} (pid {r['pid']})" if r.get("endpoint_url") else ""
    keep = getattr(args, "keep_minutes", None)
    lasts = (
        f"the sweeper removes it after {keep} minutes"
        if keep
        else f"it stays up until `{CLI} teardown --endpoint {r['endpoint_name']}`"
    )
    return [
        f"endpoint {r['endpoint_name']} {r['status']}{where}: {lasts}",
        f"next: {CLI} invoke --endpoint {r['endpoint_name']} --image IMAGE.jpg --draw detections.png",
    ]


def invoke(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    shown = r["summary"]
    counts = ", ".join(f"{name} {n}" for name, n in shown["per_class"].items())
    best = shown["best"]
    lines = [
        f"{counts} at score >= {shown['threshold']:g}"
        if counts
        else f"no detection reaches score {shown['threshold']:g}"
    ]
    if best:
        lines.append(f"best score {best['score']:.2f} ({best['class']}) of {shown['detections']} detections")
        if not counts:
            lines.append(f"hint: try --threshold {max(round(best['score'] - 0.05, 2), 0.0):g}")
    if r.get("drawing"):
        lines.append(f"drawing: {r['drawing']['path']}")
    lines.append(f"next: {CLI} teardown --endpoint {args.endpoint}")
    return lines


def teardown(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    stopped = r.get("stopped")
    if stopped is None:  # SageMaker: what was deleted
        return [f"deleted: {', '.join(f'{k} {v}' for k, v in r.items() if v) or 'nothing (already gone)'}"]
    if not stopped:
        return ["no endpoint was running"]
    lines = [f"stopped {s['name']} ({s['result']})" for s in stopped]
    lines += [f"log kept: {s['log_path']}" for s in stopped if s.get("log_path")]
    return lines


def endpoints(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    rows = r["endpoints"]
    if not rows:
        return ["no endpoints"]
    return [
        f"{e['name']}  {e.get('status', '')}  {e.get('url') or '-'}  pid {e.get('pid') or '-'}  "
        f"keep until {e.get('keep_until') or 'teardown'}  model {e.get('model_uri') or '-'}"
        for e in rows
    ]


def sweep(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    verb = "would remove" if getattr(args, "dry_run", False) else "removed"
    names = [n for names in r.values() for n in names]
    return [f"{verb}: {', '.join(names)}" if names else f"{verb} nothing: no endpoint is past its keep time"]


def run(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    lines = []
    if evaluation := r.get("evaluation"):
        split = evaluation.get("split", "test")
        lines.append(f"{split} mAP {evaluation['map']:.4f} (report: {evaluation['report_uri']})")
    if promotion := r.get("promotion"):
        outcome = "promoted" if promotion["promote"] else "NOT PROMOTED"
        lines.append(f"PROMOTION GATE: {outcome}: {promotion['reason']}")
        registered = f"version {promotion['version']} of {promotion['registered_model']}"
        if not promotion["promote"]:
            lines.append(
                f"{registered} registered; nothing was deployed (--promotion-threshold sets the threshold; "
                "more epochs help)"
            )
        elif (r.get("approval") or {}).get("pending"):
            lines.append(f"{registered} waits for approval; nothing was deployed")
            lines.append(f"next: {CLI} promote --version {promotion['version']} --reason WHY")
        elif (r.get("approval") or {}).get("approved"):
            lines.append(f"{registered} is the champion now")
    if deployed := r.get("deploy"):
        lines.append(
            f"deployed {deployed['endpoint_name']}; smoke test: {r.get('smoke_test', {}).get('detections')} detections"
        )
    kept = (r.get("teardown") or {}).get("kept_endpoints") or []
    for name in kept:
        lines.append(f"endpoint {name} stays up; next: {CLI} invoke --endpoint {name} --image IMAGE.jpg")
    steps = ("recordio", "training", "evaluation")
    reused = [step for step in steps if (r.get(step) or {}).get("cache", {}).get("hit")]
    if reused:
        lines.append(f"reused from the step cache: {', '.join(reused)}")
    if cost_summary := (r.get("teardown") or {}).get("cost"):
        lines.extend(cost(args, cost_summary))
    return lines


def cost(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    return [f"cost: ${r['usd']:.2f}, {r['billable_seconds']:.0f} SageMaker billable s, "
            f"{r.get('endpoint_hours', 0.0):.2f} endpoint instance-hours, "
            f"{r['cpu_seconds']:.1f} CPU s here ({r['uri']})"]  # fmt: skip


def tracking(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    if args.action == "down":
        return [f"stopped the tracking server of {r['folder']}" if r["stopped"] else f"no server ran in {r['folder']}"]
    if not r["running"]:
        return [f"no tracking server runs in {r['folder']}", f"next: {CLI} tracking up"]
    return [f"MLflow UI: {r['url']} (pid {r['pid']}, log {r['log']})", f"stop it with: {CLI} tracking down"]


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def models(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    lines = [f"{r['registered_model']}  ({r['tracking_uri']})"]
    rows = r["versions"]
    if not rows:
        lines.append("no versions yet: a pipeline run registers one per trained model")
    else:
        lines.append(
            f"{'version':>7}  {'aliases':<18} {'mAP':>7} {'split':<10} {'COCO':>7}  {'approval':<13} "
            f"{'created':<25} airflow run"
        )
        lines += [
            f"{v['version']:>7}  {','.join(v['aliases']):<18} {_figure(v['map']):>7} {v['split'] or '-':<10} "
            f"{_figure(v['coco_map']):>7}  {v['approval'] or '-':<13} {v['created']:<25} {v['airflow_run_id'] or '-'}"
            for v in rows
        ]
    lines += [f"note: {note}" for note in r["notes"]]
    return lines


def promote(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    replaced = f"; version {r['replaced']} is previous" if r.get("replaced") else ""
    package = f"; model package {r['model_package_arn']} Approved" if r.get("model_package_arn") else ""
    return [f"version {r['version']} is the champion{replaced}{package}"]


def rollback(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    replaced = f"; version {r['replaced']} is previous" if r.get("replaced") else ""
    return [f"version {r['champion']} is the champion again{replaced}"]


def _cached(entry: Mapping[str, Any]) -> str:
    return f"{entry['file']} (sha256 {entry['sha256'][:12]}..., {entry['source']})"


def weights(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    if args.action != "list":  # import, fetch: the file now in the cache
        network = r["base_network"]
        return [
            f"{network}: {_cached(r)}; jobs with use_pretrained_model=1 and base_network {network} start from it",
            f"next: {CLI} weights list",
        ]
    lines = [f"searched: {', '.join(r['searched'])}"]
    for network, found in r.items():
        if network != "searched":
            lines.append(f"{network}: {_cached(found) if isinstance(found, Mapping) else found}")
    return lines


def transform(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    c = r["counts"]
    lines = [f"transform {r['job_name']} {r['status']}: {c['outputs']} of {c['inputs']} images scored into "
             f"{r['output_uri']} (<image>.out), {c['errors']} error records"]  # fmt: skip
    lines += [f"  could not score {path}" for path in r.get("error_records", [])[:5]]
    if r.get("prelabels"):
        p = r["prelabels"]
        lines.append(f"pre-labels: {p['boxes']} boxes at score >= {p['score_threshold']:g} on {p['images']} images "
                     f"in {p['output']}")  # fmt: skip
    folder = getattr(args, "prelabels", None) or sibling(args.output, "prelabels")
    return [*lines, f"next: {CLI} prelabel --transform {args.output} --output {folder} --score-threshold 0.5"]


def prelabel(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    files = r["files"]
    lines = [f"{r['boxes']} boxes at score >= {r['score_threshold']:g} on {r['images']} images "
             f"({r['images_without_boxes']} without one; {r['left_out_with_errors']} inputs with errors left out)"]
    lines += [f"  {kind}: {uri}" for kind, uri in files.items()]
    if "labelstudio" in files:
        lines.append("Label Studio: create a project with labelstudio/label_config.xml, import labelstudio/tasks.json "
                     "(the boxes arrive as predictions to accept or correct), review, export as JSON")  # fmt: skip
    return [*lines, f"next: {CLI} ingest --format labelstudio --source EXPORT.json --output "
                    f"{sibling(args.output, 'ingest')}"]  # fmt: skip


def monitor(args: argparse.Namespace, r: Mapping[str, Any]) -> list[str]:
    lines = [f"{r['status']}: {r['reason']}", f"report: {r['report_uri']}",
             f"Model Monitor files: {r['statistics_uri']}, {r['violations_uri']}"]  # fmt: skip
    if r["status"] == "drifted":
        lines.append("retrain on new data: trigger object_detection_pipeline (or post a labelled_dataset event)")
    return lines


#: command -> its summary (commands without one print their JSON result).
SUMMARIES: dict[str, Summary] = {
    "ingest": ingest,
    "validate": validate,
    "build-recordio": build_recordio,
    "train": train,
    "tune": train,
    "evaluate": evaluate,
    "export-model": export_model,
    "deploy": deploy,
    "invoke": invoke,
    "teardown": teardown,
    "endpoints": endpoints,
    "sweep": sweep,
    "run": run,
    "cost": cost,
    "tracking": tracking,
    "models": models,
    "promote": promote,
    "rollback": rollback,
    "weights": weights,
    "monitor": monitor,
    "transform": transform,
    "prelabel": prelabel,
}
