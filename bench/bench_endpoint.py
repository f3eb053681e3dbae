"""Benchmark: the local endpoint against the model's own forward pass, in the same run.

Reference: ``decode_image`` + ``Detector.predict`` in this process, one image at a time.
Endpoint: the same JPEG POSTed to ``/invocations`` of a managed endpoint over a keep-alive
connection (HTTP, JSON, queueing and the model thread included). Both are measured in
interleaved rounds so drifting load from other processes hits both alike. Then requests/s and
latency with 4 concurrent clients, for ``--max-batch`` 1 (forward passes serialized) and 4
(waiting requests batched).

    .venv/bin/python -m bench.bench_endpoint [--model model.tar.gz] [--rounds 4] [--per-round 10]

Without ``--model`` an untrained ssd_512_mobilenet1.0_custom (image_shape 512) is exported to a
temporary folder: its forward pass costs what a trained one costs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")

from include.endpoints.local import start_endpoint, stop_endpoint
from include.serving import contract
from tests.support.shared_data import BCCD_IMAGES

if TYPE_CHECKING:
    from include.model_artifact import Detector

DEFAULT_IMAGE = BCCD_IMAGES / "BloodImage_00000.jpg"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    return f"p50 {statistics.median(values):7.1f} ms  p99 {percentile(values, 99):7.1f} ms  (n={len(values)})"


def export_untrained(path: Path) -> str:
    """An untrained SSD 512 artifact (same graph and cost as a trained one)."""
    import warnings

    import mxnet as mx
    import numpy as np
    from gluoncv import model_zoo

    from include import model_artifact

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = model_zoo.get_model("ssd_512_mobilenet1.0_custom", classes=["a", "b", "c"], pretrained_base=False)
        net.initialize(mx.init.Normal(0.01))
        net.hybridize()
        net.set_nms(0.45)
        net(model_artifact.preprocess([np.zeros((512, 512, 3), dtype=np.uint8)], 512))
        hyper = {"num_classes": "3", "image_shape": "512"}
        return model_artifact.export_model(net, hyper, {0: "a", 1: "b", 2: "c"}, str(path))


def jpeg_512(source: Path) -> bytes:
    """The source image resized to 512 pixels wide (512x384 for BCCD), JPEG quality 95."""
    import cv2

    image = cv2.imread(str(source))
    if image is None:
        raise ValueError(f"{source}: not a readable image")
    height = round(image.shape[0] * 512 / image.shape[1])
    return cv2.imencode(".jpg", cv2.resize(image, (512, height)), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


class Client:
    """A keep-alive HTTP client posting one JPEG to /invocations."""

    def __init__(self, url: str, body: bytes) -> None:
        parsed = urlparse(url)
        self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)
        self.body = body

    def post(self, expect: int = 200) -> float:
        """One request; its latency in ms (the answer is checked against the contract when 200)."""
        started = time.perf_counter()
        self.conn.request("POST", "/invocations", body=self.body, headers={"Content-Type": "image/jpeg"})
        response = self.conn.getresponse()
        answer = json.loads(response.read())
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != expect:
            raise RuntimeError(f"endpoint answered {response.status}, expected {expect}: {answer}")
        if expect == 200:
            contract.check_prediction_schema(answer)
        return elapsed

    def close(self) -> None:
        self.conn.close()


def concurrent_run(url: str, body: bytes, clients: int, per_client: int) -> tuple[float, list[float]]:
    """``clients`` threads each posting ``per_client`` times; returns (requests/s, latencies)."""
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[Exception] = []

    def worker() -> None:
        client = Client(url, body)
        try:
            client.post()  # connect and warm up outside the timed part
            barrier.wait()
            for _ in range(per_client):
                elapsed = client.post()
                with lock:
                    latencies.append(elapsed)
        except Exception as exc:  # reported after the run
            errors.append(exc)
        finally:
            client.close()

    barrier = threading.Barrier(clients + 1)
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    return len(latencies) / wall, latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def single_client_rounds(
    state: dict, body: bytes, detector: Detector, rounds: int, per_round: int
) -> tuple[list[float], list[float], float, float]:
    """Endpoint and in-process latencies (ms), measured in alternating rounds after a warm-up of each.

    Also the CPU milliseconds per image each side spent (this process for the reference, the server
    process for the endpoint): unlike wall time, CPU time barely moves when other work shares the cores.
    """
    from include.model_artifact import decode_image

    client = Client(state["url"], body)
    try:
        for _ in range(3):
            detector.predict(decode_image(body))
            client.post()
        served: list[float] = []
        reference: list[float] = []
        cpu_reference = cpu_served = 0.0
        for _ in range(rounds):
            cpu = time.process_time()
            for _ in range(per_round):
                started = time.perf_counter()
                detector.predict(decode_image(body))
                reference.append((time.perf_counter() - started) * 1000)
            cpu_reference += time.process_time() - cpu
            cpu = cpu_seconds(state["pid"])
            served.extend(client.post() for _ in range(per_round))
            cpu_served += cpu_seconds(state["pid"]) - cpu
    finally:
        client.close()
    count = rounds * per_round
    return served, reference, cpu_served * 1000 / count, cpu_reference * 1000 / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model.tar.gz URI (default: export an untrained SSD 512)")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--per-client", type=int, default=10)
    parser.add_argument(
        "--max-batch", type=lambda text: [int(v) for v in text.split(",")], default=[1, 4],
        help="endpoint max_batch values for the concurrent runs, comma-separated (default 1,4)",
    )  # fmt: skip
    args = parser.parse_args()

    from include.model_artifact import decode_image, load_detector

    body = jpeg_512(args.image)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or export_untrained(Path(tmp) / "model.tar.gz")
        detector = load_detector(model)
        shape = decode_image(body).shape
        print(f"image {shape[1]}x{shape[0]} JPEG ({len(body)} bytes), model image_shape {detector.image_shape}")
        print(f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, {os.cpu_count()} CPUs (shared with other work)")

        endpoints = Path(tmp) / "endpoints"
        reference: list[float] = []
        served: list[float] = []
        for max_batch in args.max_batch:
            name = f"bench-b{max_batch}"
            state = start_endpoint(model, name, endpoints, max_batch=max_batch, ready_timeout_s=300)
            try:
                if not served:  # the single-client comparison, against the first endpoint
                    served, reference, cpu_served, cpu_reference = single_client_rounds(
                        state, body, detector, args.rounds, args.per_round
                    )
                    print(f"in-process decode+forward : {summary(reference)}  CPU {cpu_reference:6.1f} ms/image")
                    print(f"endpoint, 1 client        : {summary(served)}  CPU {cpu_served:6.1f} ms/image (server)")
                    ratio = statistics.median(served) / statistics.median(reference)
                    print(f"endpoint / in-process p50 : {ratio:.3f}  (target <= 1.15)")
                    print(f"endpoint / in-process CPU : {cpu_served / cpu_reference:.3f}")
                    garbage = Client(state["url"], b"\xff" * len(body))  # same size, answered 400 before any forward
                    overhead = [garbage.post(expect=400) for _ in range(args.rounds * args.per_round)]
                    garbage.close()
                    print(f"HTTP round trip, no forward: {summary(overhead)}")
                rate, latencies = concurrent_run(state["url"], body, args.clients, args.per_client)
                print(f"{args.clients} clients, max_batch {max_batch}  : {rate:5.2f} req/s  {summary(latencies)}")
            finally:
                stop_endpoint(name, endpoints)
        print(f"single-client rate (1000 / in-process p50): {1000 / statistics.median(reference):5.2f} req/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
