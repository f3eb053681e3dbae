"""Benchmark: the local endpoint on MXNet and on ONNX Runtime, against the model's own forward pass, in one run.

Reference: ``decode_image`` + ``Detector.predict`` in this process, one image at a time.
Endpoints: the same JPEG POSTed to ``/invocations`` of a managed endpoint over a keep-alive
connection (HTTP, JSON, queueing and the model thread included), one endpoint per runtime:
``model.tar.gz`` on MXNet, its ONNX export (exported here) on ONNX Runtime. The reference and the
endpoints are measured in interleaved rounds so drifting load from other processes hits all alike.
Then requests/s and latency with 4 concurrent clients, for ``--max-batch`` 1 (forward passes
serialized) and 4 (waiting requests batched), per runtime; then each server's memory (RSS, PSS,
peak RSS) and how long it took to answer ``/ping``.

The production endpoint (``--sections production``): the same model behind the router
(:mod:`include.serving.router`) on SageMaker Runtime's InvokeEndpoint path, single client, in
interleaved rounds of: the model server directly, the router with data capture off, the router
capturing 100 % (capture toggled on the running router). Then the switch drill: 4 boto3
``sagemaker-runtime`` clients (no retries) while two rollouts and a rollback happen: failed requests,
answers from a model not serving at the time, latency overall and while a switch runs.

    .venv/bin/python -m bench.bench_endpoint [--model model.tar.gz] [--rounds 4] [--per-round 10]
    .venv/bin/python -m bench.bench_endpoint --sections production [--rounds 6] [--per-round 10]

Without ``--model`` the trainer's MobileNet SSD at 512 px is built on the ImageNet base weights of
``../shared/models`` with fresh heads (scores spread like a trained model's, so NMS costs what it
costs in use) and exported to a temporary folder.
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
from include.serving.inference import RUNTIMES
from tests.support.shared_data import BCCD_IMAGES

if TYPE_CHECKING:
    from include.model_artifact import Detector

DEFAULT_IMAGE = BCCD_IMAGES / "BloodImage_00000.jpg"
REFERENCE = "in-process decode+forward"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    return f"p50 {statistics.median(values):7.1f} ms  p99 {percentile(values, 99):7.1f} ms  (n={len(values)})"


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

    def __init__(self, url: str, body: bytes, path: str = "/invocations") -> None:
        parsed = urlparse(url)
        self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)
        self.body = body
        self.path = path

    def post(self, expect: int = 200) -> float:
        """One request; its latency in ms (the answer is checked against the contract when 200)."""
        started = time.perf_counter()
        self.conn.request("POST", self.path, body=self.body, headers={"Content-Type": "image/jpeg"})
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
    states: dict[str, dict], body: bytes, detector: Detector, rounds: int, per_round: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Latencies (ms) of the in-process reference and of each endpoint, measured in alternating rounds after a warm-up.

    Also the CPU milliseconds per image each side spent (this process for the reference, the server
    process for an endpoint): unlike wall time, CPU time barely moves when other work shares the cores.
    """
    from include.model_artifact import decode_image

    clients = {runtime: Client(state["url"], body) for runtime, state in states.items()}
    latencies: dict[str, list[float]] = {REFERENCE: [], **{runtime: [] for runtime in clients}}
    cpu = dict.fromkeys(latencies, 0.0)
    try:
        for _ in range(3):
            detector.predict(decode_image(body))
            for client in clients.values():
                client.post()
        for _ in range(rounds):
            started_cpu = time.process_time()
            for _ in range(per_round):
                started = time.perf_counter()
                detector.predict(decode_image(body))
                latencies[REFERENCE].append((time.perf_counter() - started) * 1000)
            cpu[REFERENCE] += time.process_time() - started_cpu
            for runtime, client in clients.items():
                before = cpu_seconds(states[runtime]["pid"])
                latencies[runtime].extend(client.post() for _ in range(per_round))
                cpu[runtime] += cpu_seconds(states[runtime]["pid"]) - before
    finally:
        for client in clients.values():
            client.close()
    return latencies, {side: seconds * 1000 / (rounds * per_round) for side, seconds in cpu.items()}


def memory_mib(pid: int) -> dict[str, float]:
    """A server's resident memory now (RSS), its proportional share (PSS: shared pages split) and its peak RSS."""
    import psutil

    info = psutil.Process(pid).memory_full_info()
    peak_kib = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("VmHWM:"))  # fmt: skip
    return {"RSS": info.rss / 2**20, "PSS": info.pss / 2**20, "peak RSS": peak_kib / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model.tar.gz URI (default: build a 512 px MobileNet SSD, see above)")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--per-client", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2, help="concurrent runs per runtime, alternating (default 2)")
    parser.add_argument(
        "--max-batch", type=lambda text: [int(v) for v in text.split(",")], default=[1, 4],
        help="endpoint max_batch values for the concurrent runs, comma-separated (default 1,4)",
    )  # fmt: skip
    parser.add_argument(
        "--runtimes", type=lambda text: text.split(","), default=list(RUNTIMES),
        help="comma-separated, of mxnet and onnxruntime (default both)",
    )  # fmt: skip
    parser.add_argument(
        "--sections", type=lambda text: text.split(","), default=["runtimes", "production"],
        help="comma-separated, of runtimes and production (default both)",
    )  # fmt: skip
    args = parser.parse_args()

    from include.export.onnx_export import export_onnx
    from include.model_artifact import decode_image, load_detector
    from tests.support.export_fixtures import build_spread_ssd

    body = jpeg_512(args.image)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_spread_ssd(Path(tmp) / "model.tar.gz", 512)
        models = {"mxnet": model}
        if "onnxruntime" in args.runtimes:
            models["onnxruntime"] = export_onnx(model, str(Path(tmp) / "onnx"))["uri"]
        detector = load_detector(model)
        shape = decode_image(body).shape
        print(f"image {shape[1]}x{shape[0]} JPEG ({len(body)} bytes), model image_shape {detector.image_shape}")
        print(f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, {os.cpu_count()} CPUs (shared with other work)")
        endpoints = Path(tmp) / "endpoints"
        if "production" in args.sections:
            report_production(model, body, Path(tmp), args)
        if "runtimes" not in args.sections:
            return 0
        states: dict[str, dict] = {}
        try:
            for runtime in args.runtimes:
                started = time.monotonic()
                states[runtime] = start_endpoint(models[runtime], f"bench-{runtime}", endpoints, ready_timeout_s=300,
                                                 runtime=runtime)  # fmt: skip
                states[runtime]["ready_s"] = time.monotonic() - started
            report_single_client(states, body, detector, args)
            report_concurrency(states, models, endpoints, body, args)
            for runtime, state in states.items():
                figures = "  ".join(f"{k} {v:6.0f} MiB" for k, v in memory_mib(state["pid"]).items())
                print(f"memory, {runtime:<11}: {figures}  (/ping 200 after {state['ready_s']:.1f} s)")
            if len(states) == 2:
                pss = {runtime: memory_mib(state["pid"])["PSS"] for runtime, state in states.items()}
                print(f"onnxruntime / mxnet PSS : {pss['onnxruntime'] / pss['mxnet']:.3f}")
        finally:
            for runtime in states:
                stop_endpoint(f"bench-{runtime}", endpoints)
    return 0


def report_single_client(states: dict[str, dict], body: bytes, detector: Detector, args: argparse.Namespace) -> None:
    latencies, cpu = single_client_rounds(states, body, detector, args.rounds, args.per_round)
    for side, values in latencies.items():
        label = side if side == REFERENCE else f"endpoint {side}, 1 client"
        print(f"{label:<32}: {summary(values)}  CPU {cpu[side]:6.1f} ms/image")
    p50 = {side: statistics.median(values) for side, values in latencies.items()}
    if "mxnet" in states:
        print(f"endpoint mxnet / in-process p50  : {p50['mxnet'] / p50[REFERENCE]:.3f}  (target <= 1.15)")
        print(f"endpoint mxnet / in-process CPU  : {cpu['mxnet'] / cpu[REFERENCE]:.3f}")
    if len(states) == 2:
        p99 = {side: percentile(values, 99) for side, values in latencies.items()}
        print(f"onnxruntime / mxnet p50, p99, CPU: {p50['onnxruntime'] / p50['mxnet']:.3f}, "
              f"{p99['onnxruntime'] / p99['mxnet']:.3f}, {cpu['onnxruntime'] / cpu['mxnet']:.3f}")  # fmt: skip
    first = next(iter(states.values()))
    garbage = Client(first["url"], b"\xff" * len(body))  # same size, answered 400 before any forward
    overhead = [garbage.post(expect=400) for _ in range(args.rounds * args.per_round)]
    garbage.close()
    print(f"HTTP round trip, no forward      : {summary(overhead)}")
    print(f"single-client rate (1000 / in-process p50): {1000 / p50[REFERENCE]:5.2f} req/s")


def report_concurrency(
    states: dict[str, dict], models: dict[str, str], endpoints: Path, body: bytes, args: argparse.Namespace
) -> None:
    """Requests/s and latencies with ``--clients`` clients per runtime and max_batch, runtimes alternating."""
    for max_batch in args.max_batch:
        rates: dict[str, list[float]] = {runtime: [] for runtime in states}
        latencies: dict[str, list[float]] = {runtime: [] for runtime in states}
        batched = {}
        try:
            for runtime in states:
                batched[runtime] = states[runtime] if max_batch == 1 else start_endpoint(
                    models[runtime], f"bench-{runtime}-b{max_batch}", endpoints, max_batch=max_batch,
                    ready_timeout_s=300, runtime=runtime,
                )  # fmt: skip
            for _ in range(args.repeats):
                for runtime, state in batched.items():
                    rate, values = concurrent_run(state["url"], body, args.clients, args.per_client)
                    rates[runtime].append(rate)
                    latencies[runtime].extend(values)
        finally:
            if max_batch != 1:
                for runtime in batched:
                    stop_endpoint(f"bench-{runtime}-b{max_batch}", endpoints)
        for runtime in states:
            rate = statistics.median(rates[runtime])
            spread = f"{min(rates[runtime]):5.2f}..{max(rates[runtime]):5.2f}"
            label = f"{args.clients} clients, {runtime}, max_batch {max_batch}"
            print(f"{label:<32}: {rate:5.2f} req/s (runs {spread})  {summary(latencies[runtime])}")
        if len(states) == 2:
            ratio = statistics.median(rates["onnxruntime"]) / statistics.median(rates["mxnet"])
            print(f"onnxruntime / mxnet req/s, max_batch {max_batch}: {ratio:.3f}")


def report_production(model: str, body: bytes, tmp: Path, args: argparse.Namespace) -> None:
    """Capture's cost and the router's hop at p50 (same process, interleaved), then the switch drill."""
    from include.endpoints.production_local import admin_call, production_state, remove, switch_to
    from include.serving.smoke import parse_prediction

    root, name = tmp / "production", "bench-prod"
    capture = {"destination": str(tmp / "capture"), "percent": 100.0}

    def smoke(url: str) -> dict:
        return {"detections": len(parse_prediction(_post(url, body), url))}

    def release(model_id: str) -> dict:
        return switch_to(root, name, model, model_id, smoke, port=0, max_body_bytes=contract.DEFAULT_MAX_BODY_BYTES,
                         capture=capture)  # fmt: skip

    try:
        first = release("v1")
        router = production_state(root, name)
        invoke_path = f"/endpoints/{name}/invocations"
        sides = {"model server, direct": first["upstream_url"], "router, capture off": first["url"],
                 "router, capture 100 %": first["url"]}  # fmt: skip
        latencies: dict[str, list[float]] = {side: [] for side in sides}
        router_cpu = {side: 0.0 for side in sides}  # the router process's CPU seconds (capture runs there)
        written = {"offered": 0, "written": 0, "dropped": 0, "errors": 0}
        for _ in range(args.rounds):
            for side, url in sides.items():
                capturing = "100" in side
                admin_call(router, "PUT", "/-/capture", capture if capturing else None)
                client = Client(url, body, invoke_path)
                client.post()  # connect and warm up
                cpu = cpu_seconds(router["pid"])
                latencies[side].extend(client.post() for _ in range(args.per_round))
                client.close()
                time.sleep(0.5)  # the capture writer's last records (all sides wait alike)
                router_cpu[side] += cpu_seconds(router["pid"]) - cpu
                if capturing:
                    stats = admin_call(router, "GET", "/-/status")["capture"]
                    written = {key: written[key] + stats[key] for key in written}
        admin_call(router, "PUT", "/-/capture", capture)
        for side, values in latencies.items():
            cpu_ms = router_cpu[side] * 1000 / len(values)
            print(f"production, {side:<21}: {summary(values)}  router CPU {cpu_ms:5.2f} ms/request")
        p50 = {side: statistics.median(values) for side, values in latencies.items()}
        off, on = p50["router, capture off"], p50["router, capture 100 %"]
        print(f"capture 100 % / off p50          : {on / off:.3f}  ({(on - off) / off * 100:+.1f} % of p50; "
              f"target < 5 %); records offered {written['offered']}, written {written['written']}, "
              f"dropped {written['dropped']}, lost {written['errors']}")  # fmt: skip
        print(f"router / direct p50              : {off / p50['model server, direct']:.3f}")
        drill(name, body, release, first["url"], args)
    finally:
        remove(root, name)


def _post(url: str, body: bytes) -> bytes:
    from include.endpoints.invocation import post_invocation

    return post_invocation(url, body, "image/jpeg", contract.JSON_ACCEPT)


def drill(name: str, body: bytes, release, url: str, args: argparse.Namespace) -> None:
    """4 boto3 clients while two rollouts and a rollback switch the endpoint: failures, wrong models, latency."""
    from tests.support.client_loop import ClientLoop, allowed_models

    switches, outcomes = [], []
    with ClientLoop(url, name, body, threads=args.clients) as loop:
        time.sleep(3)
        for model_id in ("v2", "v3", "v2"):  # the last: a rollback to the model that served before
            started = time.monotonic()
            outcomes.append(release(model_id))
            switches.append((started, time.monotonic(), model_id))
            time.sleep(3)
    calls = loop.calls
    failed = [c for c in calls if c.error]
    wrong = [c for c in calls if not c.error and c.model not in allowed_models(c, "v1", switches)]
    during = [c.ms for c in calls if any(c.started <= end and c.ended >= start for start, end, _ in switches)]
    print(f"switch drill, {args.clients} boto3 clients, 2 rollouts + 1 rollback: {len(calls)} requests, "
          f"{len(failed)} failed, {len(wrong)} from a model not serving at the time")  # fmt: skip
    if failed:
        print(f"  first failure: {failed[0].error}")
    print(f"  all requests                   : {summary([c.ms for c in calls])}")
    print(f"  while a release ran            : {summary(during)}")
    for (started, ended, model_id), outcome in zip(switches, outcomes, strict=True):
        print(f"  release {model_id}: {ended - started:5.1f} s (new server + smoke test + switch), "
              f"switch {outcome['switch_ms']} ms, old server drained in {outcome['drain_ms']} ms")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
