"""The local object-detection algorithm: a training job's process, from the request to ``model.tar.gz``.

Run as ``python -m include.training.algorithm --request job.json --workdir DIR`` (the local
executor's child process): it reads the CreateTrainingJob request, stages the channels, checks the
hyperparameters against the data, builds the SSD (ImageNet base weights from the weights cache,
frozen layers, the ``model`` channel's weights), trains it (:mod:`include.training.ssd_trainer`), prints the
algorithm's metric lines (and human lines) on stdout, writes the best epoch's model to
``DIR/model.tar.gz`` with :func:`include.model_artifact.export_model` and its outcome to
``DIR/result.json``. It exits by itself when its parent process goes away.

``use_pretrained_model=1`` means what it means on SageMaker: the base network starts from its
ImageNet weights (:mod:`include.training.pretrained`), or the job fails at once with a
ClientError naming the missing file and the import command, before any data is read. Fine-tuning
from them, the base network's BatchNorm statistics stay ImageNet's, the learning rate warms up
over the first epoch and the base network learns at ``base_lr_factor`` times ``learning_rate``
(docs/transfer-learning.md has the measurements behind each).
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
from include.training import jumpstart_job
from include.training.channel_conversion import recordio_channels
from include.training.hyperparameters import DEFAULTS, validate_hyperparameters
from include.training.pretrained import WeightsFile, check_cached, resolve
from include.training.recordio_data import Batchify, RecordChannel, loader
from include.training.ssd_network import base_parameters, build_ssd, freeze
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


def pretrained_weights(hp: dict[str, Any], emit: Emit) -> WeightsFile | None:
    """The checked ImageNet weights ``use_pretrained_model=1`` asks for (None for 0); ValueError when unavailable."""
    if not hp["use_pretrained_model"]:
        emit(f"use_pretrained_model=0: the {hp['base_network']} base network starts from random weights")
        return None
    weights = check_cached(resolve(hp["base_network"]))
    emit(f"Pretrained {hp['base_network']} base network: ImageNet weights {weights.path} "
         f"(sha256 {weights.sha256}, {weights.source})")
    return weights


def training_json_keys(request: TrainingRequest, weights: WeightsFile | None) -> dict[str, Any]:
    """What the job's training.json adds: the start weights (file, sha256, source), what ran for a JumpStart request."""
    keys: dict[str, Any] = {"PretrainedWeights": weights.record()} if weights else {}
    if request.channel_format == "jumpstart":
        keys.update(jumpstart_job.substitute(request, keys.get("PretrainedWeights", {})))
    return keys


def request_hyperparameters(
    request: TrainingRequest, num_classes: int | None = None, num_training_samples: int | None = None
) -> dict[str, str]:
    """The algorithm's hyperparameters (strings): the request's own, or what a JumpStart request's mean here."""
    if request.channel_format != "jumpstart":
        return dict(request.hyperparameters)
    return jumpstart_job.algorithm_hyperparameters(request, num_classes, num_training_samples)


def stage_data(request: TrainingRequest, workdir: Path, emit: Emit) -> tuple[dict[str, Path], str]:
    """The RecordIO ``train``/``validation`` folders (and ``model``) of the request, and where its class map is."""
    emit(f"Staging channels {', '.join(sorted(request.channels))} ({request.channel_format})")
    if request.channel_format == "recordio":
        data = workdir / "input" / "data"
        folders = {name: stage_channel(uri, data / name) for name, uri in request.channels.items()}
        return folders, request.channels["train"]
    if "model" in request.channels and request.channel_format == "jumpstart":
        emit("The JumpStart model channel (a COCO-trained detector) is not used: the base starts from ImageNet weights")
    folders = recordio_channels(request, workdir, emit)
    return folders, folders["train"].as_uri()


def run_job(request: TrainingRequest, workdir: Path, emit: Emit, data_workers: int) -> dict[str, Any]:
    """Stage, check, train and export; the outcome as a JSON-able dict (raises ValueError on bad input)."""
    start = time.monotonic()
    deadline = start + request.max_runtime_s if request.max_runtime_s else None
    hp = validate_hyperparameters(request_hyperparameters(request))
    weights = pretrained_weights(hp, emit)
    folders, class_source = stage_data(request, workdir, emit)
    train = RecordChannel(folders["train"], workdir / "index" / "train")
    validation = RecordChannel(folders["validation"], workdir / "index" / "validation")
    classes, classes_uri = find_class_map(class_source, hp["num_classes"])
    hp_strings = request_hyperparameters(request, len(classes), len(train))
    emit(f"Class map: {classes_uri or 'none found, using class_<id> names'}; "
         f"{len(train)} training and {len(validation)} validation records")
    hp = validate_hyperparameters(
        hp_strings,
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
    net = build_ssd(hp["base_network"], hp["image_shape"], class_names, weights.path if weights else None)
    if "model" in folders:
        load_model_channel(net, folders["model"], hp, emit)
    if hp["base_lr_factor"] != 1.0:
        for param in base_parameters(net, hp["base_network"]):
            param.lr_mult = hp["base_lr_factor"]
    frozen = freeze(net, hp["freeze_layer_pattern"])
    if hp["freeze_layer_pattern"]:
        emit(f"freeze_layer_pattern {hp['freeze_layer_pattern']!r} froze {len(frozen)} parameter(s)")
    if hp["kv_store"]:
        emit(f"kv_store={hp['kv_store']} has no effect on a single local host")
    size, batch = hp["image_shape"], hp["mini_batch_size"]
    train_data = loader(train, batch, Batchify(size, flip_probability=0.5), shuffle=True, workers=data_workers)
    validation_data = loader(validation, batch, Batchify(size), shuffle=False, workers=data_workers)
    warmup = len(train_data) if weights else 0
    emit(f"Training {hp['base_network']} SSD at {size}px for {hp['epochs']} epochs, batch {batch}, "
         f"{hp['optimizer']} lr {hp['learning_rate']} (base network x{hp['base_lr_factor']:g})"
         + (f", warm-up over the first {warmup} batches" if warmup else ""))
    outcome, best_params = train_ssd(net, train_data, validation_data, hp, class_names, emit, deadline, warmup)
    model_path = None
    if best_params:
        model_path = workdir / MODEL_ARCHIVE
        export_best(net, best_params, hp, {**DEFAULTS, **hp_strings}, classes, model_path)
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
        "training_json": training_json_keys(request, weights),
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
