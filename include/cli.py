"""``detection-pipeline``: every stage of the pipeline by hand, with the code the DAG runs.

Stage subcommands take ``--input``/``--output`` URIs (local paths, ``file://`` or ``s3://``);
options they do not get come from the validated configuration (``config show`` prints it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from include.configs import PARAM_KEYS, ConfigError, load_config
from include.preprocess.readers import AUTO, FORMATS
from include.preprocess.writers import WRITER_FORMATS


def _report(args: argparse.Namespace, result: Any) -> None:
    """The command's summary on stderr and, with ``--json`` (or when it has no summary), its result on stdout."""
    from include.cli_summaries import SUMMARIES

    summary = SUMMARIES.get(args.command)
    if summary is not None:
        for line in summary(args, result):
            print(line, file=sys.stderr)
    if args.json or summary is None:
        print(json.dumps(result, indent=2, default=str))


def _config(args: argparse.Namespace) -> Any:
    overrides: dict[str, Any] = {}
    if getattr(args, "backend", None):
        overrides["backend"] = args.backend
    return load_config(overrides=overrides)


def parse_key_values(pairs: Sequence[str] | None) -> dict[str, str]:
    """``NAME=VALUE`` words as a dict (``-H`` hyperparameters, ``stack run --conf`` params)."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected NAME=VALUE, got {pair!r}")
        out[key] = value
    return out


def _or(value: Any, default: Any) -> Any:
    """``value`` unless the flag was not given (``None``): then the configuration's ``default``."""
    return default if value is None else value


def _fraction(text: str) -> float:
    """An argparse type: a score threshold or a fraction, within [0, 1]."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {text}")
    return value


def _class_list(text: str) -> list[str]:
    """An argparse type: a comma-separated class list (ids or names), as the DAG param and ``run`` take it."""
    return [c.strip() for c in text.split(",") if c.strip()]


# --- stage commands -----------------------------------------------------------------------


def cmd_ingest(args: argparse.Namespace) -> Any:
    from include.preprocess.ingest import ingest

    ds = _config(args).dataset
    return ingest(
        args.format,
        args.source,
        args.output,
        classes=args.classes or None,
        label_attribute=args.label_attribute or ds.label_attribute,
        validation_fraction=_or(args.validation_fraction, ds.validation_fraction),
        test_fraction=_or(args.test_fraction, ds.test_fraction),
        seed=_or(args.seed, ds.seed),
        image_policy=args.image_policy or ds.image_policy,
    )


def cmd_validate(args: argparse.Namespace) -> Any:
    from include.preprocess.quality.gate import validate
    from include.stages import gate_options

    options = gate_options(_config(args))
    options["checks"].update(parse_key_values(args.check))
    if args.policy:
        options["policy"] = args.policy
    if args.label_width:
        options["label_width"] = args.label_width
    return validate(args.input, args.output, **options)


def cmd_export(args: argparse.Namespace) -> Any:
    from include.preprocess.writers import export

    return export(
        args.format,
        args.input,
        args.output,
        quality_uri=args.quality,
        label_issues_uri=args.label_issues,
        images=args.images,
        image_root_url=args.image_root_url,
    )


def cmd_build_recordio(args: argparse.Namespace) -> Any:
    from include.preprocess.quality.gate import check_gate_passed
    from include.preprocess.recordio import build_recordio
    from include.training.hyperparameters import label_width

    if not check_gate_passed(args.input, required=not args.skip_gate):
        logging.getLogger(__name__).warning("%s has not been through the quality gate (--skip-gate)", args.input)
    cfg = _config(args)
    r = cfg.recordio
    quality = _or(args.quality, r.quality)
    flip = "none" if args.no_flip else r.flip
    result = build_recordio(
        args.input,
        args.output,
        resize=r.resize if args.resize is None else (args.resize or None),
        quality=quality,
        flip=flip,
        shards=_or(args.shards, r.shards),
        workers=r.workers,
        decoder="exact" if args.exact else r.decoder,
        label_width=label_width(cfg.training.hyperparameters),
    )
    from include.training.pipeline_training import channel_format as training_channel_format

    channel_format = args.channel_format or training_channel_format(cfg)
    if channel_format != "recordio":
        from include.preprocess.channels import build_training_channels

        result["training_channels"] = build_training_channels(
            args.input, args.output, channel_format, r.label_attribute, flip, quality, r.workers
        )
    return result


def cmd_train(args: argparse.Namespace) -> Any:
    from include.training.pipeline_training import run_training

    hp = parse_key_values(args.hyperparameter)
    return run_training(args.input, args.output, hp, tune=args.command == "tune", config=_config(args))


def cmd_evaluate(args: argparse.Namespace) -> Any:
    from include.evaluation.evaluate import evaluate

    e = _config(args).evaluation
    return evaluate(
        args.input,
        args.data,
        args.output,
        score_threshold=_or(args.score_threshold, e.score_threshold),
        samples=e.samples,
        split=args.split,
        promotion_threshold=_or(args.promotion_threshold, e.promotion_threshold),
        label_issues=_or(args.label_issues, e.label_issues),
        label_issues_shown=e.label_issues_shown,
    )


def cmd_export_model(args: argparse.Namespace) -> Any:
    from include.export.model_export import export_model, read_export
    from include.export.parity import channel_images, folder_images
    from include.export.parity import summary_line as parity_line
    from include.sagemaker.naming import RunIdentity

    cfg = _config(args)
    formats = args.format or cfg.export.formats
    limit = args.parity_images or cfg.export.parity_images
    model_uri, recorded_data = _training_input(args.input)
    images: Any = ()
    if "onnx" in formats and args.images:
        images = folder_images(args.images, limit)
    elif "onnx" in formats:
        if not (args.data or recorded_data):
            raise ValueError(
                f"{args.input} records no data folder: give --data (a RecordIO build) or --images (a folder of "
                "JPEG/PNG files) for the parity check"
            )
        images = channel_images(args.data or recorded_data, limit)
    run = RunIdentity(dag_id="cli", run_id=f"cli-{datetime.now(UTC):%Y%m%dT%H%M%S}", try_number=1)
    result = export_model(cfg, model_uri, args.output, run=run, formats=formats, images=images, report_uri=args.report)
    record = read_export(result["export_uri"])
    if "onnx" in record:
        result["parity_line"] = parity_line(record["onnx"]["parity"])
    return {**result, "record": record}


def _training_input(uri: str) -> tuple[str, str | None]:
    """The model.tar.gz of a training output (a tuning job's: its best trial's) or archive, and its recorded data."""
    from include.evaluation.training_run import resolve_training

    resolved = resolve_training(uri)
    logging.getLogger(__name__).info("%s", resolved.describe(uri))
    return resolved.model_uri, resolved.record.get("data_uri")


def cmd_deploy(args: argparse.Namespace) -> Any:
    from include.endpoints.lifecycle import deploy_artifact

    cfg = _config(args)
    args.keep_minutes = _or(args.keep_minutes, cfg.deploy.keep_endpoint_minutes)
    return deploy_artifact(
        cfg, args.input, name=args.name, keep_minutes=args.keep_minutes or None, runtime=args.runtime
    )


def cmd_invoke(args: argparse.Namespace) -> Any:
    from include.endpoints.invocation import invoke_endpoint

    cfg = _config(args)
    threshold = _or(args.threshold, cfg.evaluation.score_threshold)
    return invoke_endpoint(cfg, args.endpoint, args.image, draw=args.draw, threshold=threshold)


def cmd_teardown(args: argparse.Namespace) -> Any:
    from include.endpoints.lifecycle import teardown_endpoints

    return teardown_endpoints(_config(args), args.endpoint)


def cmd_endpoints(args: argparse.Namespace) -> Any:
    from include.endpoints.lifecycle import describe_endpoints

    return {"endpoints": describe_endpoints(_config(args))}


def cmd_sweep(args: argparse.Namespace) -> Any:
    from include.endpoints.lifecycle import expired_endpoints, sweep

    cfg = _config(args)
    return expired_endpoints(cfg) if args.dry_run else sweep(cfg)


def cmd_run(args: argparse.Namespace) -> Any:
    from include.pipeline_run import run_pipeline

    params = {k: v for k, v in vars(args).items() if k in PARAM_KEYS and v is not None}  # the DAG's params
    source = params.get("dataset_source")
    if source and source != "sample" and "://" not in source:
        params["dataset_source"] = os.path.abspath(source)  # as typed: relative to the current folder
    cfg = load_config(params=params)
    if not cfg.tracking.uri:  # the local tracking server: started when it is not running, and left running
        from include.tracking import server

        details = server.start(server.local_dir(cfg), server.artifact_root(cfg))
        print(f"MLflow UI: {details['url']}  (stop it with: detection-pipeline tracking down)", file=sys.stderr)
    return run_pipeline(params, run_id=args.run_id)


def cmd_cost(args: argparse.Namespace) -> Any:
    from include import storage
    from include.run_layout import RunLayout
    from include.stages import RunContext, run_cost

    base, dag_id, run_id = storage.normalize(args.run).rsplit("/", 2)
    return run_cost(RunContext(_config(args), RunLayout.create(base, dag_id, run_id), dag_id, run_id))


# --- tracking and the model registry --------------------------------------------------------


def cmd_tracking(args: argparse.Namespace) -> Any:
    """The local tracking server: ``up`` (start unless running), ``down``, ``status``."""
    from include.tracking import server

    cfg = _config(args)
    folder = server.local_dir(cfg)
    if args.action == "up":
        return server.start(folder, server.artifact_root(cfg))
    if args.action == "down":
        return {"stopped": server.stop(folder), "folder": str(folder)}
    return server.status(folder)


def _registry(args: argparse.Namespace) -> tuple[Any, str, Any]:
    """``(config, tracking URI, registry)`` of the pipeline's registered model; the server must answer."""
    from include.project import PIPELINE_DAG_ID
    from include.tracking.registry import Registry
    from include.tracking.uri import check_reachable, resolve_uri

    cfg = _config(args)
    uri = resolve_uri(cfg)
    check_reachable(uri, cfg.tracking.timeout_seconds)
    return cfg, uri, Registry(uri, cfg.tracking.registered_model or PIPELINE_DAG_ID)


def _who() -> str:
    import getpass

    return f"cli:{getpass.getuser()}"


def cmd_models(args: argparse.Namespace) -> Any:
    """The registered model's versions with their aliases and metrics (the summary prints them as a table)."""
    from include.tracking.registry import CHAMPION, PREVIOUS

    _, uri, registry = _registry(args)
    versions = registry.versions()
    notes = [n for alias in (CHAMPION, PREVIOUS) if (n := registry.lookup(alias).note)]
    rows = [
        {
            "version": v.version,
            "aliases": list(v.aliases),
            "map": v.score,
            "split": v.score_split,
            "coco_map": float(v.tags["coco_map"]) if v.tags.get("coco_map") else None,
            "approval": v.tags.get("detection.approval", ""),
            "airflow_run_id": v.tags.get("detection.airflow_run_id", ""),
            "created": datetime.fromtimestamp(v.created_ms / 1000, UTC).isoformat(timespec="seconds"),
            "run_id": v.run_id,
            "model": v.model_data_url,
            "onnx_sha256": v.tags.get("detection.export.onnx_sha256"),
        }
        for v in versions
    ]
    return {"registered_model": registry.name, "tracking_uri": uri, "versions": rows, "notes": notes}


def cmd_promote(args: argparse.Namespace) -> Any:
    from include.tracking.promotion import promote_version

    cfg, uri, registry = _registry(args)
    return promote_version(cfg, uri, registry.name, args.version, by=_who(),
                           reason=args.reason or "promoted with detection-pipeline promote")


def cmd_rollback(args: argparse.Namespace) -> Any:
    """The registry's champion back to ``previous`` (or ``--version``); with ``--endpoint`` the production endpoint
    back to the model it served before (and the champion with it when it was the champion that served)."""
    reason = args.reason or "rolled back with detection-pipeline"
    if args.endpoint:
        from include.stages import release_endpoint

        if args.version is not None:
            raise ValueError("--endpoint rolls back to what the endpoint served before; --version moves the registry")
        params = {"action": "rollback", "endpoint_name": args.endpoint, "smoke_images": args.smoke_images,
                  "backend": args.backend}  # fmt: skip
        return release_endpoint(params, by=_who(), reason=reason)
    _, _, registry = _registry(args)
    return registry.rollback(args.version, by=_who(), reason=reason)


def cmd_release(args: argparse.Namespace) -> Any:
    """Put the champion (or ``--version``, or ``--model``) on the production endpoint without downtime."""
    from include.stages import release_endpoint

    if args.model and args.version is not None:
        raise ValueError("give --version (a registry version) or --model (an archive), not both")
    params = {"endpoint_name": args.endpoint, "model_version": args.version, "smoke_images": args.smoke_images,
              "runtime": args.runtime, "backend": args.backend}  # fmt: skip
    reason = args.reason or "released with detection-pipeline release"
    return release_endpoint(params, by=_who(), reason=reason, model_uri=args.model, port=args.port)


def cmd_production(args: argparse.Namespace) -> Any:
    from include.endpoints.production import describe

    return describe(_config(args), args.endpoint)


def cmd_weights(args: argparse.Namespace) -> Any:
    """The ImageNet weights cache: ``import`` a file, ``list`` what is there, ``fetch`` from GluonCV's model store."""
    from pathlib import Path

    from include.training import pretrained
    from include.training.hyperparameters import LOCAL_BASE_NETWORKS

    cache = Path(args.cache) if args.cache else None
    if args.action == "import":
        if not args.file:
            raise ValueError("weights import needs the FILE to import")
        if args.source_format == "gluoncv":
            return pretrained.import_weights(Path(args.file), args.base_network, cache).record()
        if args.base_network != "mobilenet-1.0":
            raise ValueError("--from tf-slim converts TF-slim MobileNet v1 (--base-network mobilenet-1.0)")
        import tempfile

        from include.training.tf_slim import convert_frozen_graph

        with tempfile.TemporaryDirectory() as tmp:
            converted = convert_frozen_graph(Path(args.file), Path(tmp) / "converted.params")
            imported = pretrained.import_weights(converted, args.base_network, cache, converted_from=Path(args.file))
        return imported.record()
    if args.file:
        raise ValueError(f"weights {args.action} takes no FILE")
    if args.action == "fetch":
        return pretrained.download(args.base_network, cache).record()
    listing: dict[str, Any] = {"searched": [str(folder) for folder in pretrained.search_dirs()]}
    for network in LOCAL_BASE_NETWORKS:
        found = pretrained.find(network)
        listing[network] = found.record() if found else f"not cached ({pretrained.file_name(network)})"
    return listing


# --- batch transform and pre-labels ----------------------------------------------------------------


def _transform_plan(args: argparse.Namespace) -> dict[str, Any]:
    """The plan :func:`include.stages.resolve_transform` makes of the command line (a run named after the time)."""
    from include.stages import resolve_transform

    params = {"backend": args.backend, "model": args.model, "input_uri": args.input, "output_uri": args.output,
              "prelabels_uri": getattr(args, "prelabels", None)}  # fmt: skip
    return resolve_transform(params, "cli", f"cli-{datetime.now(UTC):%Y%m%dT%H%M%S}")


def cmd_transform(args: argparse.Namespace) -> Any:
    from include.sagemaker.naming import RunIdentity
    from include.stages import prelabels, run_transform

    plan = _transform_plan(args)
    plan["workers"] = args.workers or plan["workers"]
    result = run_transform(plan, RunIdentity(dag_id=plan["dag_id"], run_id=plan["run_id"], try_number=1))
    if args.prelabels:
        result["prelabels"] = prelabels(plan)
    return result


def cmd_prelabel(args: argparse.Namespace) -> Any:
    from include.stages import prelabels
    from include.transform.outputs import read_output

    record = read_output(args.transform).record
    model = args.model or record.get("ModelDataUrl")
    if not model and not args.classes:
        raise ValueError(f"{args.transform}: its transform.json names no model (a SageMaker job's): give --model or "
                         "--classes")  # fmt: skip
    cfg = _config(args)
    plan = {"params": {"backend": cfg.backend}, "output_uri": args.transform, "prelabels_uri": args.output,
            "model_uri": model, "classes": args.classes, "score_threshold": args.score_threshold,
            "formats": args.format}  # fmt: skip
    return prelabels(plan, image_root_url=args.image_root_url)


def cmd_config_show(args: argparse.Namespace) -> Any:
    overrides: dict[str, Any] = {}
    if args.backend:
        overrides["backend"] = args.backend
    return load_config(overrides=overrides).model_dump(mode="json")


def cmd_stack(args: argparse.Namespace) -> Any:
    """Hand over to :mod:`devtools.stack`: developer tooling of a source checkout, not of the package.

    It runs in its own interpreter (``exec``) so that nothing in the package imports it.
    """
    import importlib.util
    import os

    if importlib.util.find_spec("devtools") is None:
        raise RuntimeError(
            "the local Airflow stack is developer tooling that comes with a source checkout of the project "
            "(devtools/), not with the installed package; run it from a checkout (make airflow-up)"
        )
    os.execv(sys.executable, [sys.executable, "-m", "devtools.stack", *args.stack_args])


# --- monitoring of what the endpoint sees ----------------------------------------------------


def cmd_monitor(args: argparse.Namespace) -> Any:
    from include.stages import monitor

    params = {"source": args.source, "baseline": args.baseline, "window_hours": args.window_hours,
              "trigger_retraining": False, **({"backend": args.backend} if args.backend else {})}  # fmt: skip
    run_id = "cli__" + datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return monitor(params, run_id=run_id, output_uri=args.output, input_uri=args.input)


def monitor_exit_status(result: dict[str, Any]) -> int:
    """1 when the data drifted (scripts and cron can act on it), else 0."""
    return 1 if result.get("status") == "drifted" else 0


# --- parser -------------------------------------------------------------------------------


def _defaults() -> Any:
    """The configuration the help shows defaults from (None when the environment's is invalid: help still works)."""
    try:
        return load_config()
    except ConfigError:
        return None


def build_parser() -> argparse.ArgumentParser:
    cfg = _defaults()

    def default(key: str) -> str:
        """``(default: <key> = <value>)`` from the configuration, for flags whose default lives there."""
        value: Any = cfg
        for part in key.split("."):
            value = getattr(value, part, None) if not isinstance(value, dict) else value.get(part)
        return f"(default: {key} = {value})" if cfg is not None else f"(default: {key} from the configuration)"

    parser = argparse.ArgumentParser(prog="detection-pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the command's full result as JSON on stdout (the summary goes to stderr)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], Any], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        p.add_argument("--backend", choices=["local", "sagemaker"], help=f"configuration profile {default('backend')}")
        return p

    classes_help = "class subset, comma-separated ids or names (e.g. RBC,WBC), renumbered 0..N-1 (default: all)"

    p = add("ingest", cmd_ingest, "read a data set into annotations.parquet + classes.json")
    p.add_argument(
        "--format",
        default=AUTO,
        choices=[*FORMATS, AUTO],
        help="the data set's annotation format (default: auto, detected from the layout)",
    )
    p.add_argument("--source", required=True, help="data set root URI (or the manifest for groundtruth)")
    p.add_argument("--output", required=True, help="folder (path or URI) for the canonical table")
    p.add_argument("--classes", type=_class_list, help=classes_help)
    p.add_argument("--label-attribute", help="Ground Truth label attribute (default: found automatically)")
    p.add_argument(
        "--validation-fraction",
        type=_fraction,
        help=f"images drawn for validation when the data set has no split {default('dataset.validation_fraction')}",
    )
    p.add_argument(
        "--test-fraction",
        type=_fraction,
        help=f"images held out for test when the data set has none {default('dataset.test_fraction')}",
    )
    p.add_argument("--seed", type=int, help=f"seed of the drawn splits {default('dataset.seed')}")
    p.add_argument(
        "--image-policy",
        choices=["convert", "reject"],
        help=f"PNG/RGBA/grayscale files named .jpg: convert them or reject them {default('dataset.image_policy')}",
    )

    p = add("validate", cmd_validate, "the bounding-box quality gate: quality.json, quality.html, cleaned table")
    p.add_argument("--input", required=True, help="ingest output folder")
    p.add_argument("--output", required=True, help="folder for the reports and the gated table (not the input)")
    p.add_argument(
        "--policy",
        choices=["fail", "drop"],
        help=f"policy of every check not set otherwise; fail: stop on bad boxes; drop: quarantine them and go on "
        f"{default('quality.policy')}",
    )
    p.add_argument(
        "--label-width",
        type=int,
        help=f"training label_width the boxes per image must fit {default('training.hyperparameters.label_width')}",
    )
    p.add_argument(
        "--check",
        action="append",
        metavar="CHECK=POLICY",
        help="one check's policy, fail, drop or warn, over --policy (repeatable; default: quality.checks, then "
        "each check's own default)",
    )

    p = add("export", cmd_export, "write a gated (or ingested) data set for a labelling tool, flagged boxes marked")
    p.add_argument("--format", required=True, choices=WRITER_FORMATS, help="the labelling tool's format")
    p.add_argument("--input", required=True, help="validate (or ingest) output folder")
    p.add_argument("--output", required=True, help="folder for the exported data set")
    p.add_argument("--quality", help="a validate output whose quality.json flags boxes (default: the input's own)")
    p.add_argument("--label-issues", help="an evaluate output whose label_issues.json flags boxes (default: none)")
    p.add_argument(
        "--images", choices=["copy", "link"], default="copy", help="copy the images or symlink them (default: copy)"
    )
    p.add_argument("--image-root-url", help="labelstudio: image URL prefix (default: /data/local-files/?d=)")

    p = add("build-recordio", cmd_build_recordio, "train/, validation/ and test/ .lst, .rec, .idx and recordio.json")
    p.add_argument("--input", required=True, help="validate output folder (a table that passed the quality gate)")
    p.add_argument("--output", required=True, help="folder for the channels")
    p.add_argument(
        "--resize", type=int, help=f"shorter side to N pixels, 0 keeps the originals {default('recordio.resize')}"
    )
    p.add_argument("--quality", type=int, help=f"JPEG quality of re-encoded images {default('recordio.quality')}")
    p.add_argument("--no-flip", action="store_true", help="no horizontal-flip augmentation")
    p.add_argument("--shards", type=int, help=f"shards the build is split into {default('recordio.shards')}")
    p.add_argument("--exact", action="store_true", help="decode as im2rec does: records byte-identical to its output")
    p.add_argument(
        "--channel-format",
        choices=["recordio", "augmented-manifest", "image-json", "jumpstart"],
        help="also write these training channels beside the RecordIO (manifest/, image-json/ or jumpstart/) "
        f"{default('recordio.channel_format')}",
    )
    p.add_argument(
        "--skip-gate",
        action="store_true",
        help="build from a table that has not passed the quality gate (warns instead of refusing)",
    )

    for name, func, help_ in (
        ("train", cmd_train, "run a training job: model.tar.gz, training.log, training.json"),
        ("tune", cmd_train, "run a tuning job: tuning.json and the best model"),
    ):
        p = add(name, func, help_)
        p.add_argument("--input", required=True, help="build-recordio output folder")
        p.add_argument("--output", required=True, help="folder the job writes under (<output>/<job>/output/)")
        p.add_argument(
            "--hyperparameter",
            "-H",
            action="append",
            metavar="NAME=VALUE",
            help="override one hyperparameter of the profile (repeatable; default: the profile's hyperparameters)",
        )

    model_help = "the model: a training or tuning output folder, a job folder, <job>/output or a model.tar.gz"
    p = add("evaluate", cmd_evaluate, "evaluation.json, charts, sample detections and report.html")
    p.add_argument("--input", required=True, help=model_help)
    p.add_argument("--data", help="build-recordio output folder (default: the one the training job recorded)")
    p.add_argument("--output", required=True, help="folder for the report")
    p.add_argument(
        "--split",
        choices=["test", "validation"],
        help="channel to score (default: test, the held-out split, when the data has one)",
    )
    p.add_argument(
        "--score-threshold",
        type=_fraction,
        help=f"score of the drawn sample detections {default('evaluation.score_threshold')}",
    )
    p.add_argument(
        "--promotion-threshold",
        type=_fraction,
        help=f"mAP the report's verdict compares with {default('evaluation.promotion_threshold')}",
    )
    p.add_argument(
        "--label-issues",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"rank likely label errors of the scored split with cleanlab {default('evaluation.label_issues')}",
    )

    p = add("export-model", cmd_export_model, "export a model: ONNX checked against MXNet, or a Neo compilation")
    p.add_argument("--input", required=True, help=model_help)
    p.add_argument("--output", required=True, help="the export folder (export.json, onnx/, neo/)")
    p.add_argument(
        "--format", action="append", choices=["onnx", "neo"],
        help="onnx (with parity against MXNet) or neo (sagemaker backend); repeat for both (default: config)",
    )  # fmt: skip
    p.add_argument("--data", help="RecordIO build whose test/validation images check parity (default: training.json's)")
    p.add_argument("--images", help="a folder of JPEG/PNG files to check parity on instead of --data (default: none)")
    p.add_argument("--parity-images", type=int, help="how many images (default: export.parity_images)")
    p.add_argument("--report", help="an evaluation report.html to add the export section to (default: none)")

    p = add("deploy", cmd_deploy, "start an endpoint serving a model")
    p.add_argument(
        "--input",
        required=True,
        help=f"{model_help}; with --runtime onnxruntime an export folder or model.onnx",
    )
    p.add_argument(
        "--runtime", choices=["mxnet", "onnxruntime"],
        help=f"serve model.tar.gz on MXNet or the ONNX export on ONNX Runtime {default('deploy.runtime')}",
    )  # fmt: skip
    p.add_argument("--name", help="endpoint name (default: derived from the time)")
    p.add_argument(
        "--keep-minutes",
        type=int,
        help="minutes until the sweeper removes it; 0: until `detection-pipeline teardown` "
        f"{default('deploy.keep_endpoint_minutes')}",
    )

    p = add("invoke", cmd_invoke, "send an image to an endpoint; detections per class at the threshold")
    p.add_argument("--endpoint", required=True, help="endpoint name or URL")
    p.add_argument("--image", required=True, help="a JPEG or PNG file")
    p.add_argument("--draw", metavar="OUT.png", help="draw the detections into this PNG or .jpg (default: no drawing)")
    p.add_argument(
        "--threshold",
        type=_fraction,
        help=f"score a detection must reach to count {default('evaluation.score_threshold')}",
    )

    p = add("teardown", cmd_teardown, "remove what deploy created")
    p.add_argument("--endpoint", help="one endpoint name or URL (default: every local endpoint deploy recorded)")

    add("endpoints", cmd_endpoints, "list endpoints: name, status, URL, PID, keep-until, model")

    p = add("sweep", cmd_sweep, "remove endpoints whose keep time has passed (what the endpoint_sweeper DAG runs)")
    p.add_argument("--dry-run", action="store_true", help="list them, remove nothing")

    p = add("cost", cmd_cost, "what a run cost: <run>/cost.json (steps' CPU s, billable s, dollars) and report.html")
    p.add_argument("--run", required=True, help="the run's folder, <storage>/<dag id>/<run id>")

    p = add("run", cmd_run, "the whole pipeline outside Airflow, in this process")
    p.add_argument("--run-id", help="run id (default: manual__<timestamp>)")
    p.add_argument(
        "--dataset-source",
        help=f"'sample', a path (relative to the current folder) or a file:// / s3:// URI {default('dataset.source')}",
    )
    p.add_argument(
        "--dataset-format",
        choices=[*FORMATS, AUTO],
        help=f"annotation format, auto: detected from the layout {default('dataset.format')}",
    )
    p.add_argument("--classes", type=_class_list, help=classes_help)
    p.add_argument("--epochs", type=int, help=f"training epochs {default('training.hyperparameters.epochs')}")
    p.add_argument(
        "--tune",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"tune first, then hand on the best trial {default('training.tune')}",
    )
    p.add_argument(
        "--deploy",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"deploy when the promotion gate passes {default('deploy.enabled')}",
    )
    p.add_argument(
        "--promotion-threshold",
        type=_fraction,
        help=f"test mAP a model needs to be deployed {default('evaluation.promotion_threshold')}",
    )
    p.add_argument(
        "--keep-endpoint-minutes",
        type=int,
        help=f"leave the endpoint up this long, 0: tear it down {default('deploy.keep_endpoint_minutes')}",
    )
    p.add_argument(
        "--delete-intermediate-files",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"after a passed smoke test, delete the data set, ingest, quality and RecordIO folders "
        f"{default('deploy.delete_intermediate_files')}",
    )
    p.add_argument(
        "--quality-policy",
        choices=["fail", "drop"],
        help=f"fail: stop on bad boxes; drop: quarantine them and go on {default('quality.policy')}",
    )
    p.add_argument(
        "--export",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"export the model after evaluation (ONNX with parity, or Neo) {default('export.enabled')}",
    )
    p.add_argument(
        "--deploy-runtime",
        choices=["mxnet", "onnxruntime"],
        help=f"what serves the endpoint {default('deploy.runtime')}",
    )
    p.add_argument(
        "--use-cache",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"reuse the outputs of steps whose inputs did not change; --no-use-cache runs every step fresh "
        f"{default('cache.enabled')}",
    )
    p.add_argument(
        "--approval",
        choices=["auto", "manual"],
        help="manual: register a winning model but leave it for detection-pipeline promote "
        f"{default('promotion.approval')}",
    )
    p.add_argument(
        "--approval-timeout-minutes",
        type=float,
        help="how long a DAG run waits for a manual approval before it counts as a rejection (the DAG param; "
        f"run itself does not wait) {default('promotion.approval_timeout_minutes')}",
    )

    p = add("tracking", cmd_tracking, "the local MLflow tracking server: up | down | status")
    p.add_argument("action", choices=["up", "down", "status"])

    add("models", cmd_models, "the registered model's versions, aliases (champion, previous) and metrics")

    p = add("promote", cmd_promote, "make a version the champion (approving it; the old champion becomes previous)")
    p.add_argument("--version", type=int, required=True, help="the model version (detection-pipeline models)")
    p.add_argument(
        "--reason",
        help="why, kept on the version and in the alias history (default: promoted with detection-pipeline promote)",
    )

    p = add(
        "rollback", cmd_rollback,
        "make the previous champion (or --version N) the champion again; with --endpoint NAME, put back the model "
        "the production endpoint served before (no downtime)",
    )  # fmt: skip
    p.add_argument("--version", type=int, help="a version that was champion before (default: previous)")
    p.add_argument("--endpoint", help="the production endpoint to roll back (default: only the registry)")
    p.add_argument("--smoke-images", help="a folder of images the restored model must answer (default: its run's)")
    p.add_argument("--reason", help="why, recorded in the alias history (default: rolled back with detection-pipeline)")

    p = sub.add_parser("weights", help="ImageNet weights of the base networks: import | list | fetch",
                       description="The weights cache use_pretrained_model=1 reads ($DETECTION_PRETRAINED_DIR, then "
                       "$MXNET_HOME/models): import a file after checking it fits the base network, list the "
                       "cache, or fetch from GluonCV's model store ($MXNET_GLUON_REPO).")
    p.add_argument("action", choices=["import", "list", "fetch"])
    p.add_argument("file", nargs="?", help="import: the weights file (see --from)")
    p.add_argument("--base-network", default="mobilenet-1.0", choices=["mobilenet-1.0", "resnet-50", "vgg-16"],
                   help="the base network the weights are for (default: mobilenet-1.0)")
    p.add_argument("--cache", help="the cache folder to write (default: the first writable one)")
    p.add_argument("--from", dest="source_format", choices=["gluoncv", "tf-slim"], default="gluoncv",
                   help="import: a GluonCV .params file, or a TF-slim MobileNet v1 frozen graph (.pb) to convert")
    p.set_defaults(func=cmd_weights)

    p = add(
        "release", cmd_release,
        "put the champion (or --version N, or --model) on the production endpoint: created when absent, else "
        "switched without downtime (local) or updated blue/green with automatic rollback (sagemaker)",
    )  # fmt: skip
    p.add_argument("--endpoint", help=f"the production endpoint {default('deploy.production.endpoint_name')}")
    p.add_argument("--version", type=int, help="an approved registry version (default: the champion)")
    p.add_argument("--model", help="a model.tar.gz to release instead of a registry version (default: none)")
    p.add_argument("--runtime", choices=["mxnet", "onnxruntime"], help=f"what serves it {default('deploy.runtime')}")
    p.add_argument("--smoke-images", help="a folder of images the new model must answer first (default: its run's)")
    p.add_argument("--port", type=int, help=f"local: the stable port {default('deploy.production.port')}")
    p.add_argument("--reason", help="why, kept in the endpoint's history (default: released with detection-pipeline)")

    p = add("production", cmd_production, "the production endpoint: what serves now, the history of what served when")
    p.add_argument("--endpoint", help=f"the production endpoint {default('deploy.production.endpoint_name')}")

    p = add(
        "monitor", cmd_monitor,
        "compare what the endpoint saw (captured data, or a batch transform's output) with the model's baseline: "
        "statistics.json, constraint_violations.json, monitoring.html; exit status 1 on drift",
    )  # fmt: skip
    p.set_defaults(exit_status=monitor_exit_status)
    p.add_argument("--source", help="a capture prefix or a transform's output folder (default: monitoring.source, "
                   "else the production endpoint's captured data)")  # fmt: skip
    p.add_argument("--input", help="a transform's input folder (default: the one its transform.json names)")
    p.add_argument("--baseline", help="a baseline folder, or a registry version (3 or v3) (default: the champion's)")
    p.add_argument(
        "--window-hours", type=int, help=f"captured data of the last N hours {default('monitoring.window_hours')}"
    )
    p.add_argument("--output", help="folder for the files (default: <storage>/detection_monitoring/<run>)")
    _add_transform_commands(add, default, model_help)

    p = sub.add_parser("config", help="configuration")
    p.add_argument("action", choices=["show"], help="show: the resolved configuration as JSON")
    p.add_argument("--backend", choices=["local", "sagemaker"], help=f"configuration profile {default('backend')}")
    p.set_defaults(func=cmd_config_show)

    p = sub.add_parser("stack", help="the local Airflow stack: up | down | run (developer tooling, devtools/)")
    p.set_defaults(func=cmd_stack)
    return parser


def _add_transform_commands(add: Callable[..., argparse.ArgumentParser], default: Callable[[str], str],
                            model_help: str) -> None:  # fmt: skip
    """``transform`` and ``prelabel``."""
    from include.transform.prelabels import PRELABEL_FORMATS

    p = add("transform", cmd_transform, "score every image under a folder or S3 prefix (SageMaker Batch Transform): "
            "<output>/<image>.out per image, error records, transform.json")  # fmt: skip
    p.add_argument("--model", help=f"{model_help} (default: the registry's champion)")
    p.add_argument("--input", required=True, help="folder or S3 prefix of the images (JPEG/PNG, any depth)")
    p.add_argument("--output", required=True, help="folder or S3 prefix for the .out files (outside --input)")
    p.add_argument("--workers", type=int, help=f"local: processes scoring at once {default('transform.workers')}")
    p.add_argument("--prelabels", help="also write pre-labels of the output to this folder (default: none)")

    p = add("prelabel", cmd_prelabel, "pre-labels from a transform's output: COCO, Label Studio tasks with scored "
            "predictions, a Ground Truth manifest")  # fmt: skip
    p.add_argument("--transform", required=True, help="a transform's output folder (holding transform.json)")
    p.add_argument("--output", required=True, help="folder for coco/, labelstudio/ and groundtruth/")
    p.add_argument("--model", help="the model whose classes.json names the classes (default: the transform's model)")
    p.add_argument("--classes", type=_class_list, help="class names in class-id order, comma-separated, for a model "
                   "without classes.json (default: the model's)")  # fmt: skip
    p.add_argument("--format", action="append", choices=list(PRELABEL_FORMATS),
                   help=f"repeat for several {default('transform.prelabel_formats')}")  # fmt: skip
    p.add_argument("--score-threshold", type=_fraction,
                   help=f"boxes kept {default('transform.prelabel_score_threshold')}")  # fmt: skip
    p.add_argument("--image-root-url", help="Label Studio: URL prefix of the images (default: their s3:// URI, or a "
                   "local-files URL relative to the transform's input folder)")  # fmt: skip


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("detection-pipeline")
    except PackageNotFoundError:
        return "(not installed)"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed command line; everything after ``stack`` (``--help`` too) is left to :mod:`devtools.stack`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    at = next((i for i, word in enumerate(argv) if not word.startswith("-")), None)
    if at is not None and argv[at] == "stack":
        args = parser.parse_args([*argv[:at], "stack"])
        args.stack_args = argv[at + 1 :]
        return args
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per tracking call
    try:
        result = args.func(args)
    except ConfigError as exc:
        print(f"detection-pipeline: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("include."):
            print(f"detection-pipeline {args.command}: this stage is not available yet ({exc.name})", file=sys.stderr)
            return 3
        raise
    except FileNotFoundError as exc:
        what = f"no such file: {exc.filename}" if exc.filename else str(exc)  # raised with a message only
        print(f"detection-pipeline {args.command}: {what}", file=sys.stderr)
        return 1
    except (ValueError, RuntimeError) as exc:
        print(f"detection-pipeline {args.command}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError

        if not isinstance(exc, BotoCoreError | ClientError):
            raise
        print(f"detection-pipeline {args.command}: AWS: {exc} ({type(exc).__name__})", file=sys.stderr)
        return 1
    _report(args, result)
    return args.exit_status(result) if hasattr(args, "exit_status") else 0


if __name__ == "__main__":
    raise SystemExit(main())
