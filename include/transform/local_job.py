"""The local executor of a CreateTransformJob request: the endpoint's own code over a folder, in parallel.

Each input goes through what ``POST /invocations`` does (:mod:`include.serving.server`): the same
decoder, the model loaded by the same :func:`include.serving.inference.load_model`, one forward pass per
image (the endpoint's default batch of one, so an ``.out`` equals the endpoint's answer for that image) and
the same JSON. The images are spread over worker processes, one per core (or ``workers``), each loading the
model once and running MXNet on its share of the cores: on the 2-core machine this project is measured on,
two single-threaded processes scored BCCD faster than one process using both cores
(``bench/bench_transform.py``).

Unlike SageMaker, which fails the whole job when one object fails, a bad input gets an error record
and the job goes on; the job fails only when no input could be scored (the wrong folder, a broken model).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from include import storage

log = logging.getLogger(__name__)

#: Inputs handed to a worker at a time (small: an image takes ~0.1 s, and the last ones should spread too).
CHUNK = 2


class TransformFailedError(RuntimeError):
    """No input of a local transform could be scored; transform.json says why."""


class ModelLoadError(RuntimeError):
    """The transform's model could not be loaded in a worker (the job fails; no input is to blame)."""


@dataclass(frozen=True)
class _Work:
    """One input: where to read it and where its answer (or error record) goes."""

    prefix: str
    path: str
    output: str
    max_payload_bytes: int


_MODEL: Any = None
_LOAD_ERROR: str | None = None


def _load(model_uri: str, runtime: str, threads: int | None) -> None:
    """Load the model once in this process (a worker's initializer); ``threads``: the compute threads it may use."""
    global _MODEL, _LOAD_ERROR
    if threads:  # before MXNet (or ONNX Runtime) is imported in this process
        os.environ["OMP_NUM_THREADS"] = os.environ["MXNET_CPU_WORKER_NTHREADS"] = str(threads)
    from include.serving.inference import load_model

    try:
        _MODEL = load_model(model_uri, runtime)
    except Exception as exc:  # reported by the first input this worker takes
        _LOAD_ERROR = f"{model_uri}: {type(exc).__name__}: {exc}"


def _unload() -> None:
    """Forget the model this process loaded (the caller's, when it scored in-process)."""
    global _MODEL, _LOAD_ERROR
    _MODEL, _LOAD_ERROR = None, None


def _score(work: _Work) -> tuple[str, str | None]:
    """Score one input into its ``.out``, or write its error record; ``(path, None or the error)``."""
    from include.serving.contract import to_prediction
    from include.transform.inputs import decode_input
    from include.transform.outputs import write_answer, write_error

    if _MODEL is None:
        raise ModelLoadError(f"the model could not be loaded: {_LOAD_ERROR}")
    uri = storage.join(work.prefix, work.path)
    try:
        image = decode_input(storage.read_bytes(uri), work.max_payload_bytes)
        detections = _MODEL.predict(image)
        write_answer(work.output, work.path, to_prediction(detections.tolist()))
    except (ValueError, OSError) as exc:  # this input's fault (or its read's); the job goes on
        write_error(work.output, work.path, uri, exc)
        return work.path, f"{type(exc).__name__}: {exc}"
    return work.path, None


def _model_of(request: Mapping[str, Any]) -> tuple[str, str]:
    """The model.tar.gz (or model.onnx) and runtime the combined request's CreateModel part names."""
    from include.sagemaker.requests import RUNTIME_ENV

    if "Model" not in request:
        raise ValueError("a local transform needs the combined request's 'Model' part (there is no model registry)")
    container = request["Model"]["PrimaryContainer"]
    if "ModelDataUrl" not in container:
        raise ValueError("a local transform needs PrimaryContainer.ModelDataUrl (a model package runs on SageMaker)")
    return container["ModelDataUrl"], (container.get("Environment") or {}).get(RUNTIME_ENV, "mxnet")


def worker_count(workers: int | None, inputs: int) -> int:
    """Processes to use: ``workers`` (default: every core this process may run on), never more than inputs."""
    from include.preprocess.workers import default_workers

    return max(1, min(workers or default_workers(), inputs))


def run_transform_job(request: Mapping[str, Any], workers: int | None = None) -> dict[str, Any]:
    """Run the combined ``{"Model", "Transform"}`` request here; its DescribeTransformJob-shaped record (also
    written to ``<output>/transform.json``). ``TransformFailedError`` when no input could be scored."""
    from include.preprocess.workers import ordered_map, process_pool
    from include.transform.inputs import check_output_location, list_inputs, payload_bytes
    from include.transform.outputs import remove_stale

    transform = request["Transform"]
    model_uri, runtime = _model_of(request)
    if not storage.exists(model_uri):
        raise FileNotFoundError(f"no model at {model_uri} (the transform's ModelDataUrl)")
    output = storage.normalize(transform["TransformOutput"]["S3OutputPath"])
    prefix, paths = list_inputs(transform)
    check_output_location(prefix, output)
    remove_stale(output, paths)
    count = worker_count(workers, len(paths))
    threads = max(1, len(os.sched_getaffinity(0)) // count) if count > 1 else None
    created, started = datetime.now(UTC), time.perf_counter()
    log.info("transform %s: %d inputs under %s with %d process(es)", transform["TransformJobName"], len(paths),
             prefix, count)  # fmt: skip
    work = [_Work(prefix, p, output, payload_bytes(transform)) for p in paths]
    with process_pool(count, _load, (model_uri, runtime, threads)) as pool:
        if pool is None:
            _load(model_uri, runtime, None)
        try:
            results = list(ordered_map(_score, work, pool, chunksize=CHUNK))
        finally:
            _unload()
    return _finish(request, created, time.perf_counter() - started, results, count)


def _finish(
    request: Mapping[str, Any], created: datetime, seconds: float, results: list[tuple[str, str | None]], workers: int
) -> dict[str, Any]:
    """Write transform.json and return it; fail when nothing was scored."""
    from include.transform.outputs import error_uri, timestamp, write_record

    transform = request["Transform"]
    output = storage.normalize(transform["TransformOutput"]["S3OutputPath"])
    failed = [(p, e) for p, e in results if e is not None]
    status = "Failed" if len(failed) == len(results) else "Completed"
    description = {
        **{k: v for k, v in transform.items() if k != "Tags"},
        "TransformJobArn": f"arn:aws:sagemaker:local:000000000000:transform-job/{transform['TransformJobName']}",
        "TransformJobStatus": status,
        "CreationTime": timestamp(created),
        "TransformStartTime": timestamp(created),
        "TransformEndTime": timestamp(datetime.now(UTC)),
    }
    if status == "Failed":
        description["FailureReason"] = f"none of the {len(results)} inputs could be scored; the first: {failed[0][1]}"
    counts = {"inputs": len(results), "outputs": len(results) - len(failed), "errors": len(failed)}
    timings = {"seconds": round(seconds, 3), "images_per_second": round(counts["outputs"] / seconds, 2)}
    extra = {"Backend": "local", "ModelDataUrl": _model_of(request)[0], "Workers": workers, "Timings": timings}
    write_record(output, description, counts, [storage.relative(error_uri(output, p), output) for p, _ in failed],
                 extra)  # fmt: skip
    log.info("transform %s %s: %d scored, %d error records, %.1f s", transform["TransformJobName"], status,
             counts["outputs"], counts["errors"], seconds)  # fmt: skip
    if status == "Failed":
        raise TransformFailedError(f"transform {transform['TransformJobName']}: {description['FailureReason']}")
    return {**description, "Counts": counts, "Backend": "local", "Timings": timings}
