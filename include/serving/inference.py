"""The model behind an endpoint: loaded in the background, run by one thread that batches waiting requests.

An MXNet executor must not run two forward passes at once, so every forward runs on the single
thread of :class:`BatchingPredictor`. Requests that arrive while a forward is running wait in its
queue and are taken together, up to ``max_batch`` images, in the next forward (micro-batching
without a waiting window: a request alone on an idle endpoint is never delayed).

``max_batch`` defaults to 1 (forward passes strictly one after another): on the 2-core CPU
hosts measured with bench/bench_endpoint.py, batches of 4 cost as much CPU per image as single
images and gave fewer requests/s with 4 clients, while every image of a batch waits for the
whole batch. Raise it where the bench shows a gain (many cores, an accelerator).

The runtime is a parameter of the service (``mxnet``: ``model.tar.gz`` on MXNet; ``onnxruntime``: the
ONNX export's ``model.onnx`` on ONNX Runtime, :class:`include.ssd_numpy.OnnxSsd`); both answer the same
detections to the same code above them. The ONNX Runtime service never imports MXNet.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol

from include import storage

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

_STOP = object()

#: What can serve a model: MXNet (``model.tar.gz``) or ONNX Runtime (the ONNX export's ``model.onnx``).
RUNTIMES = ("mxnet", "onnxruntime")


class LoadedModel(Protocol):
    """A model on either runtime: :class:`include.model_artifact.Detector` or :class:`include.ssd_numpy.OnnxSsd`."""

    @property
    def image_shape(self) -> int: ...

    @property
    def classes(self) -> dict[int, str]: ...

    def predict_batch(self, images: list[np.ndarray]) -> list[np.ndarray]: ...

    def predict(self, image: np.ndarray) -> np.ndarray: ...


def check_runtime(runtime: str) -> str:
    """``runtime`` when it is one of :data:`RUNTIMES`; ``ValueError`` otherwise."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)} (got {runtime!r})")
    return runtime


def load_model(model_uri: str, runtime: str = "mxnet") -> LoadedModel:
    """The model at ``model_uri`` loaded on ``runtime``, on the CPU.

    ONNX Runtime takes as many compute threads as ``OMP_NUM_THREADS`` gives MXNet (when set), so
    one setting sizes either runtime.
    """
    if check_runtime(runtime) == "onnxruntime":
        from include.ssd_numpy import OnnxSsd

        if not model_uri.endswith(".onnx"):
            raise ValueError(f"ONNX Runtime serves an ONNX export's model.onnx, not {model_uri}: export it first")
        threads = os.environ.get("OMP_NUM_THREADS", "")
        return OnnxSsd(storage.read_bytes(model_uri), threads=int(threads) if threads.isdigit() else None, spin=False)
    from include.model_artifact import load_detector

    return load_detector(model_uri)


class BatchingPredictor:
    """Runs ``detector.predict_batch`` on one thread over the requests queued at that moment."""

    def __init__(self, detector: LoadedModel, max_batch: int = 1) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.detector = detector
        self.max_batch = max_batch
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    def submit(self, image: np.ndarray) -> Future:
        """Queue one RGB uint8 image; the future resolves to its detections (see ``LoadedModel.predict``)."""
        if not self._thread.is_alive():
            raise RuntimeError("the predictor is closed")
        future: Future = Future()
        self._queue.put((image, future))
        return future

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish the queued work and stop the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout_s)

    def _take_batch(self) -> tuple[list[tuple[np.ndarray, Future]], bool]:
        """Block for one request, then take whatever else is already waiting; also says whether to stop."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._take_batch()
            batch = [(image, future) for image, future in batch if future.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                results = self.detector.predict_batch([image for image, _ in batch])
            except Exception as exc:  # every waiting request gets the error; the thread keeps serving
                log.exception("forward pass failed", extra={"fields": {"batch": len(batch)}})
                for _, future in batch:
                    future.set_exception(exc)
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    future.set_result(result)


class ModelService:
    """Loads a model on a background thread and serves it through a :class:`BatchingPredictor`.

    ``state`` is ``loading``, ``ready`` or ``failed``; ``on_failure`` is called (from the loading
    thread) when the model cannot be loaded, so the server can exit instead of staying unhealthy.
    ``runtime`` is one of :data:`RUNTIMES` (see :func:`load_model`).
    """

    def __init__(
        self,
        model_uri: str,
        max_batch: int = 1,
        on_failure: Callable[[], None] | None = None,
        runtime: str = "mxnet",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.model_uri = model_uri
        self.runtime = check_runtime(runtime)
        self.max_batch = max_batch
        self.on_failure = on_failure
        self.state = "loading"
        self.predictor: BatchingPredictor | None = None
        self._thread = threading.Thread(target=self._load, name="model-loader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def submit(self, image: np.ndarray) -> Future:
        if self.predictor is None:
            raise RuntimeError(f"the model is not loaded (state: {self.state})")
        return self.predictor.submit(image)

    def close(self) -> None:
        if self.predictor is not None:
            self.predictor.close()

    def _load(self) -> None:
        import numpy as np

        started = time.perf_counter()
        try:
            if not storage.exists(self.model_uri):  # fail before the seconds-long MXNet import
                raise FileNotFoundError(f"no model artifact at {self.model_uri}")
            detector = load_model(self.model_uri, self.runtime)
            # The first forward builds the cached graph; do it before answering /ping with 200.
            detector.predict(np.zeros((detector.image_shape, detector.image_shape, 3), dtype=np.uint8))
        except Exception:
            self.state = "failed"
            log.exception("model load failed", extra={"fields": {"model": self.model_uri}})
            if self.on_failure is not None:
                self.on_failure()
            return
        self.predictor = BatchingPredictor(detector, self.max_batch)
        self.state = "ready"
        log.info(
            "model loaded",
            extra={
                "fields": {
                    "model": self.model_uri,
                    "runtime": self.runtime,
                    "image_shape": detector.image_shape,
                    "classes": len(detector.classes),
                    "max_batch": self.max_batch,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                }
            },
        )
