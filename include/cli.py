"""``detection-pipeline``: every stage of the pipeline by hand, with the code the DAG runs.

Stage subcommands take ``--input``/``--output`` URIs (local paths, ``file://`` or ``s3://``);
options they do not get come from the validated configuration (``config show`` prints it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from include.configs import PARAM_KEYS, ConfigError, load_config


def _print(result: Any) -> None:
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


def _score(text: str) -> float:
    """An argparse type: a detection score threshold, within [0, 1]."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {text}")
    return value


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
        validation_fraction=args.validation_fraction or ds.validation_fraction,
        seed=ds.seed if args.seed is None else args.seed,
        image_policy=args.image_policy or ds.image_policy,
    )


def cmd_validate(args: argparse.Namespace) -> Any:
    from include.preprocess.quality.gate import validate
    from include.training.hyperparameters import label_width

    cfg = _config(args)
    return validate(
        args.input,
        args.output,
        policy=args.policy or cfg.quality.policy,
        label_width=args.label_width or label_width(cfg.training.hyperparameters),
        min_box_side=cfg.quality.min_box_side,
        tolerance=cfg.quality.tolerance,
    )


def cmd_build_recordio(args: argparse.Namespace) -> Any:
    from include.preprocess.recordio import build_recordio
    from include.training.hyperparameters import label_width

    cfg = _config(args)
    r = cfg.recordio
    quality = r.quality if args.quality is None else args.quality
    flip = "none" if args.no_flip else r.flip
    result = build_recordio(
        args.input,
        args.output,
        resize=r.resize if args.resize is None else (args.resize or None),
        quality=quality,
        flip=flip,
        shards=r.shards if args.shards is None else args.shards,
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

    cfg = _config(args)
    result = evaluate(
        args.input,
        args.data,
        args.output,
        score_threshold=cfg.evaluation.score_threshold if args.score_threshold is None else args.score_threshold,
        samples=cfg.evaluation.samples,
    )
    print(f"report: {result['report_uri']}", file=sys.stderr)
    return result


def cmd_deploy(args: argparse.Namespace) -> Any:
    from include.endpoints.lifecycle import deploy_artifact

    return deploy_artifact(_config(args), args.input, name=args.name, keep_minutes=args.keep_minutes)


def cmd_invoke(args: argparse.Namespace) -> Any:
    from include.endpoints.invocation import invoke_endpoint

    return invoke_endpoint(_config(args), args.endpoint, args.image, draw=args.draw, threshold=args.threshold)


def cmd_teardown(args: argparse.Namespace) -> Any:
    from include.endpoints.lifecycle import teardown_endpoints

    return teardown_endpoints(_config(args), args.endpoint)


def cmd_run(args: argparse.Namespace) -> Any:
    from include.pipeline_run import run_pipeline

    params = {k: v for k, v in vars(args).items() if k in PARAM_KEYS and v is not None}  # the DAG's params
    return run_pipeline(params, run_id=args.run_id)


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


# --- parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detection-pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], Any], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        p.add_argument("--backend", choices=["local", "sagemaker"], help="configuration profile (default: config)")
        return p

    p = add("ingest", cmd_ingest, "read a data set into annotations.parquet + classes.json")
    p.add_argument("--format", required=True, choices=["cub", "voc", "groundtruth", "imagejson"])
    p.add_argument("--source", required=True, help="data set root URI (or the manifest for groundtruth)")
    p.add_argument("--output", required=True)
    p.add_argument("--classes", nargs="*", help="class subset, by id or name")
    p.add_argument("--label-attribute", help="Ground Truth label attribute (default: found automatically)")
    p.add_argument("--validation-fraction", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--image-policy", choices=["convert", "reject"])

    p = add("validate", cmd_validate, "the bounding-box quality gate: quality.json, quality.html, cleaned table")
    p.add_argument("--input", required=True, help="ingest output URI")
    p.add_argument("--output", required=True)
    p.add_argument("--policy", choices=["fail", "drop"])
    p.add_argument("--label-width", type=int)

    p = add("build-recordio", cmd_build_recordio, "train/ and validation/ .lst, .rec, .idx and recordio.json")
    p.add_argument("--input", required=True, help="validate (or ingest) output URI")
    p.add_argument("--output", required=True)
    p.add_argument("--resize", type=int, help="shorter side to N pixels (0 = keep originals)")
    p.add_argument("--quality", type=int, help="JPEG quality")
    p.add_argument("--no-flip", action="store_true", help="no horizontal-flip augmentation")
    p.add_argument("--shards", type=int)
    p.add_argument("--exact", action="store_true", help="decode as im2rec does: records byte-identical to its output")
    p.add_argument(
        "--channel-format",
        choices=["recordio", "augmented-manifest", "image-json", "jumpstart"],
        help="also write these training channels beside the RecordIO (manifest/, image-json/ or jumpstart/)",
    )

    for name, func, help_ in (
        ("train", cmd_train, "run a training job: model.tar.gz, training.log, training.json"),
        ("tune", cmd_train, "run a tuning job: tuning.json and the best model"),
    ):
        p = add(name, func, help_)
        p.add_argument("--input", required=True, help="build-recordio output URI")
        p.add_argument("--output", required=True)
        p.add_argument("--hyperparameter", "-H", action="append", metavar="NAME=VALUE", help="override one")

    p = add("evaluate", cmd_evaluate, "evaluation.json, charts, sample detections and report.html")
    p.add_argument("--input", required=True, help="training output URI")
    p.add_argument("--data", help="build-recordio output URI (default: recorded in the training output)")
    p.add_argument("--output", required=True)
    p.add_argument("--score-threshold", type=float)

    p = add("deploy", cmd_deploy, "start an endpoint serving a training output")
    p.add_argument("--input", required=True, help="training output URI (or a model.tar.gz)")
    p.add_argument("--name", help="endpoint name (default: derived from the input)")
    p.add_argument("--keep-minutes", type=int, default=240, help="the sweeper tears it down after N minutes")

    p = add("invoke", cmd_invoke, "send an image to an endpoint and print the detections")
    p.add_argument("--endpoint", required=True, help="endpoint name or URL")
    p.add_argument("--image", required=True)
    p.add_argument("--draw", metavar="OUT.png", help="draw the detections into this PNG")
    p.add_argument("--threshold", type=_score, default=0.5, help="score threshold for drawing (0..1)")

    p = add("teardown", cmd_teardown, "remove what deploy created")
    p.add_argument("--endpoint", help="one endpoint name or URL (default: every endpoint deploy recorded)")

    p = add("run", cmd_run, "the whole pipeline outside Airflow, in this process")
    p.add_argument("--run-id", help="run id (default: manual__<timestamp>)")
    p.add_argument("--dataset-source")
    p.add_argument("--dataset-format", choices=["cub", "voc", "groundtruth", "imagejson"])
    p.add_argument("--classes", help="comma-separated class subset")
    p.add_argument("--epochs", type=int)
    p.add_argument("--tune", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--deploy", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--keep-endpoint-minutes", type=int, help="leave the endpoint up this long (0: tear it down)")
    p.add_argument("--delete-intermediate-files", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--quality-policy", choices=["fail", "drop"], help="drop: quarantine bad boxes and go on")

    p = sub.add_parser("weights", help="ImageNet weights of the base networks: import | list | fetch",
                       description="The weights cache use_pretrained_model=1 reads ($DETECTION_PRETRAINED_DIR, then "
                       "$MXNET_HOME/models): import a file after checking it fits the base network, list the "
                       "cache, or fetch from GluonCV's model store ($MXNET_GLUON_REPO).")
    p.add_argument("action", choices=["import", "list", "fetch"])
    p.add_argument("file", nargs="?", help="import: the weights file (see --from)")
    p.add_argument("--base-network", default="mobilenet-1.0", choices=["mobilenet-1.0", "resnet-50", "vgg-16"])
    p.add_argument("--cache", help="the cache folder to write (default: the first writable one)")
    p.add_argument("--from", dest="source_format", choices=["gluoncv", "tf-slim"], default="gluoncv",
                   help="import: a GluonCV .params file, or a TF-slim MobileNet v1 frozen graph (.pb) to convert")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("config", help="configuration")
    p.add_argument("action", choices=["show"])
    p.add_argument("--backend", choices=["local", "sagemaker"])
    p.set_defaults(func=cmd_config_show)

    p = sub.add_parser("stack", help="the local Airflow stack: up | down | run (developer tooling, devtools/)")
    p.set_defaults(func=cmd_stack)
    return parser


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
    _print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
