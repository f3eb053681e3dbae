"""The local object-detection algorithm: a training job's process, from the request to ``model.tar.gz``.

Run as ``python -m include.training.algorithm --request job.json --workdir DIR`` (the local
executor's child process): it reads the CreateTrainingJob request, stages the channels, checks the
hyperparameters against the data, builds the SSD (pretrained base weights, frozen layers, the
``model`` channel's weights), trains it (:mod:`include.training.ssd_trainer`), prints the
algorithm's metric lines (and human lines) on stdout, writes the best epoch's model to
``DIR/model.tar.gz`` with :func:`include.model_artifact.export_model` and its outcome to
``DIR/result.json``. It exits by itself when its parent process goes away.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from include.run_layout import MODEL_ARCHIVE
from include.training.channel_conversion import recordio_channels
from include.training.hyperparameters import DEFAULTS, validate_hyperparameters
from include.training.recordio_data import Batchify, RecordChannel, loader
from include.training.ssd_network import build_ssd, freeze
from include.training.ssd_trainer import NMS_TOPK, POST_NMS, SEED, Emit, seed_everything, train_ssd
from include.training.training_request import TrainingRequest, find_class_map, parse_request, stage_channel

RESULT_FILE = "result.json"


def export_best(
    net: Any,
    best_params: dict[str, Any],
    hp: dict[str, Any],
    hp_strings: dict[str, str],
    classes: dict[int, str],
    path: Path,
) -> None:
    """Restore the best epoch's parameters, switch to the inference graph and write ``model.tar.gz``."""
    import mxnet as mx

    from include.model_artifact import export_model

    for name, param in net.collect_params().items():
        param.set_data(best_params[name])
    net.set_nms(nms_thresh=hp["nms_threshold"], nms_topk=NMS_TOPK, post_nms=POST_NMS)
    net.hybridize(static_alloc=True, static_shape=True)
    size = hp["image_shape"]
    net(mx.nd.zeros((1, 3, size, size)))[0].wait_to_read()
    export_model(net, hp_strings, classes, str(path))


def load_model_channel(net: Any, folder: Path, hp: dict[str, Any], emit: Emit) -> None:
    """Incremental training: start from the weights of the ``model`` channel's model.tar.gz."""
    import tempfile

    import mxnet as mx

    from include.model_artifact import HYPERPARAMS_FILE, PARAMS_FILE, unpack

    archives = sorted(folder.rglob("*.tar.gz"))
    if not archives:
        raise ValueError(f"model channel {folder}: no model.tar.gz")
    with tempfile.TemporaryDirectory() as tmp:
        unpacked = unpack(str(archives[0]), Path(tmp))
        previous = json.loads((unpacked / HYPERPARAMS_FILE).read_text())
        for name in ("base_network", "image_shape", "num_classes"):
            if str(previous.get(name)) != str(hp[name]):
                raise ValueError(
                    f"model channel {archives[0]}: hyperparameter {name}={previous.get(name)!r} of the model "
                    f"differs from {name}={hp[name]!r} of this job"
                )
        saved = {k.split(":", 1)[-1]: v for k, v in mx.nd.load(str(unpacked / PARAMS_FILE)).items()}
    params = net.collect_params()
    missing = [name for name in params if name not in saved]
    if missing:
        raise ValueError(f"model channel {archives[0]}: parameters {missing[:3]}... are not in the model")
    for name, param in params.items():
        param.set_data(saved[name])
    emit(f"Initialized all {len(params)} parameters from the model channel ({archives[0].name})")


def _watch_parent(interval: float = 0.5) -> None:
    """Exit at once when the parent process goes away (killed executor or task)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(143)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def run_job(request: TrainingRequest, workdir: Path, emit: Emit, data_workers: int) -> dict[str, Any]:
    """Stage, check, train and export; the outcome as a JSON-able dict (raises ValueError on bad input)."""
    start = time.monotonic()
    deadline = start + request.max_runtime_s if request.max_runtime_s else None
    hp = validate_hyperparameters(request.hyperparameters)
    emit(f"Staging channels {', '.join(sorted(request.channels))} ({request.channel_format})")
    if request.channel_format == "recordio":
        data = workdir / "input" / "data"
        folders = {name: stage_channel(uri, data / name) for name, uri in request.channels.items()}
        class_source = request.channels["train"]
    else:
        folders = recordio_channels(request, workdir, emit)
        class_source = folders["train"].as_uri()
    train = RecordChannel(folders["train"], workdir / "index" / "train")
    validation = RecordChannel(folders["validation"], workdir / "index" / "validation")
    classes, classes_uri = find_class_map(class_source, hp["num_classes"])
    emit(f"Class map: {classes_uri or 'none found, using class_<id> names'}; "
         f"{len(train)} training and {len(validation)} validation records")
    hp = validate_hyperparameters(
        request.hyperparameters,
        num_classes=len(classes) if classes_uri else None,
        num_training_samples=len(train),
        max_objects=max(train.max_objects, validation.max_objects),
    )
    for channel in (train, validation):
        too_big = sorted(c for c in channel.class_ids() if c >= hp["num_classes"])
        if too_big:
            raise ValueError(f"hyperparameter num_classes={hp['num_classes']} does not match the data: "
                             f"{channel.folder} uses class id(s) {too_big}")
    class_names = [classes[i] for i in range(hp["num_classes"])]
    seed_everything(SEED)
    net = build_ssd(hp["base_network"], hp["image_shape"], class_names, bool(hp["use_pretrained_model"]), emit)
    if "model" in folders:
        load_model_channel(net, folders["model"], hp, emit)
    frozen = freeze(net, hp["freeze_layer_pattern"])
    if hp["freeze_layer_pattern"]:
        emit(f"freeze_layer_pattern {hp['freeze_layer_pattern']!r} froze {len(frozen)} parameter(s)")
    if hp["kv_store"]:
        emit(f"kv_store={hp['kv_store']} has no effect on a single local host")
    size, batch = hp["image_shape"], hp["mini_batch_size"]
    train_data = loader(train, batch, Batchify(size, flip_probability=0.5), shuffle=True, workers=data_workers)
    validation_data = loader(validation, batch, Batchify(size), shuffle=False, workers=data_workers)
    emit(f"Training {hp['base_network']} SSD at {size}px for {hp['epochs']} epochs, batch {batch}, "
         f"{hp['optimizer']} lr {hp['learning_rate']}")
    outcome, best_params = train_ssd(net, train_data, validation_data, hp, class_names, emit, deadline)
    model_path = None
    if best_params:
        model_path = workdir / MODEL_ARCHIVE
        hp_strings = {**DEFAULTS, **request.hyperparameters}
        export_best(net, best_params, hp, hp_strings, classes, model_path)
        emit(f"Exported the model of epoch {outcome.best_epoch} (validation mAP {outcome.best_map:.4f})")
    return {
        "status": "Stopped" if outcome.stop_reason == "max_runtime" else "Completed",
        "stop_reason": outcome.stop_reason,
        "model_path": str(model_path) if model_path else None,
        "best_epoch": outcome.best_epoch,
        "best_validation_map": outcome.best_map,
        "best_class_ap": outcome.best_class_ap,
        "epochs": [{**asdict(e), "throughput": e.throughput} for e in outcome.epochs],
        "classes": {str(k): v for k, v in classes.items()},
        "classes_uri": classes_uri,
        "frozen_parameters": len(frozen),
        "num_training_records": len(train),
        "num_validation_records": len(validation),
        "seconds": time.monotonic() - start,
    }


def main(argv: list[str] | None = None) -> int:
    """Child-process entry: run the request in ``--workdir``; 0 done, 2 client error, 1 algorithm error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--request", required=True, type=Path, help="CreateTrainingJob request (JSON)")
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--data-workers", type=int, default=1, help="data-loader threads (0: none)")
    args = parser.parse_args(argv)
    _watch_parent()
    import cv2

    cv2.setNumThreads(1)

    def emit(line: str) -> None:
        print(line, flush=True)

    try:
        request = parse_request(json.loads(args.request.read_text()))
        result, code = run_job(request, args.workdir, emit, args.data_workers), 0
    except ValueError as exc:
        emit(f"ClientError: {exc}")
        result, code = {"status": "Failed", "failure_reason": f"ClientError: {exc}"}, 2
    except Exception as exc:  # noqa: BLE001 - any other failure is the algorithm's, reported like SageMaker's
        emit(traceback.format_exc().rstrip())
        result, code = {"status": "Failed", "failure_reason": f"AlgorithmError: {type(exc).__name__}: {exc}"}, 1
    tmp = args.workdir / f".{RESULT_FILE}.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, args.workdir / RESULT_FILE)
    return code


if __name__ == "__main__":
    sys.exit(main())
