"""Benchmark: a local batch transform of a folder against calling a running endpoint image by image, in one run.

Reference: a local endpoint (``include.endpoints.local``, the model loaded and warm, MXNet on every core as
``detection-pipeline deploy`` starts it) answering the folder's images one after another from this process
over a keep-alive connection, as a script looping over a folder would. Transform: ``detection-pipeline
transform``'s executor (:func:`include.transform.local_job.run_transform_job`) over the same folder, for each
``--workers`` count, timed from the call to its return (worker processes started and models loaded inside
the time, the .out files and transform.json written). Rounds interleave the variants so drifting load from
other processes hits all alike; the median, the spread (min-max) and the ratio of each to the reference are
printed, and each round prints the largest difference between the transform's answers and the endpoint's (0 with
the same number of MXNet threads: the same code; single-threaded worker processes differ by float rounding, ~1e-6).

    .venv/bin/python -m bench.bench_transform [--model model.tar.gz] [--images 48] [--rounds 3] [--workers 1,2]

Without ``--model`` the trainer's MobileNet SSD at 512 px is built on the ImageNet base weights of
``../shared/models`` with fresh heads (scores spread like a trained model's) and exported to a temporary folder.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))

from include import storage
from include.endpoints.local import start_endpoint, stop_endpoint
from include.preprocess.workers import default_workers
from tests.support.shared_data import BCCD_IMAGES

REFERENCE = "endpoint, image by image"


def endpoint_pass(url: str, images: list[Path]) -> tuple[float, dict[str, bytes]]:
    """Seconds to POST every image in turn on one keep-alive connection, and the answers."""
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)
    answers = {}
    started = time.perf_counter()
    for path in images:
        conn.request("POST", "/invocations", body=path.read_bytes(), headers={"Content-Type": "image/jpeg"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path.name}: HTTP {response.status} {body[:200]!r}")
        answers[path.name] = body
    seconds = time.perf_counter() - started
    conn.close()
    return seconds, answers


def transform_pass(model: str, folder: Path, output: Path, workers: int) -> tuple[float, dict[str, bytes]]:
    """Seconds for one local transform of ``folder`` with ``workers`` processes, and its answers."""
    from include.execution import TRANSFORM, execute
    from include.sagemaker.naming import RunIdentity
    from include.sagemaker.requests import LOCAL_ROLE_ARN, TransformSettings, transform_request

    request = transform_request(RunIdentity("bench", f"w{workers}", 1), model_data_url=model, role_arn=LOCAL_ROLE_ARN,
                                region="us-east-1", input_uri=storage.normalize(folder),
                                output_uri=storage.normalize(output), settings=TransformSettings())  # fmt: skip
    started = time.perf_counter()
    result = execute(TRANSFORM, request, backend="local", local_options={"workers": workers})
    seconds = time.perf_counter() - started
    if result["counts"]["errors"]:
        raise RuntimeError(f"the transform left {result['counts']['errors']} error records in {output}")
    return seconds, {p.name.removesuffix(".out"): p.read_bytes() for p in output.glob("*.out")}


def max_difference(written: dict[str, bytes], answers: dict[str, bytes]) -> float:
    """The largest absolute difference between the transform's and the endpoint's rows, image by image (0.0: the
    same JSON); ``RuntimeError`` when an image is missing or has another number of detections."""
    import numpy as np

    if set(written) != set(answers):
        raise RuntimeError(f"images answered differ: {sorted(set(written) ^ set(answers))}")
    largest = 0.0
    for name, body in answers.items():
        a, b = np.array(json.loads(body)["prediction"]), np.array(json.loads(written[name])["prediction"])
        if a.shape != b.shape:
            raise RuntimeError(f"{name}: {len(b)} detections in the transform, {len(a)} from the endpoint")
        largest = max(largest, float(np.abs(a - b).max(initial=0.0)))
    return largest


def spread(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):6.2f} s  (min {min(values):6.2f}, max {max(values):6.2f}, n={len(values)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model.tar.gz URI (default: build a 512 px MobileNet SSD, see above)")
    parser.add_argument("--images", type=int, default=48, help="BCCD photographs in the folder (default 48)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--workers", type=lambda text: [int(v) for v in text.split(",")],
        default=sorted({1, default_workers()}),
        help="transform process counts, comma-separated (default: 1 and all cores)",
    )  # fmt: skip
    args = parser.parse_args()

    from tests.support.export_fixtures import build_spread_ssd

    sources = sorted(BCCD_IMAGES.glob("*.jpg"))[: args.images]
    if len(sources) < args.images:
        raise SystemExit(f"the BCCD data set is not at {BCCD_IMAGES} (or has fewer than {args.images} images)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = args.model or build_spread_ssd(root / "model.tar.gz", 512)
        folder = root / "unlabelled"
        folder.mkdir()
        for path in sources:
            (folder / path.name).write_bytes(path.read_bytes())
        images = sorted(folder.glob("*.jpg"))
        print(f"{len(images)} BCCD photographs (640x480 JPEG), model image_shape from {model}")
        threads = os.environ["OMP_NUM_THREADS"]
        print(f"{default_workers()} CPUs (shared with other work); endpoint OMP_NUM_THREADS={threads}")
        state = start_endpoint(model, "bench-transform", root / "endpoints", ready_timeout_s=300)
        times: dict[str, list[float]] = {REFERENCE: [], **{f"transform, {w} process(es)": [] for w in args.workers}}
        try:
            endpoint_pass(state["url"], images[:2])  # warm the connection path
            for r in range(args.rounds):
                seconds, answers = endpoint_pass(state["url"], images)
                times[REFERENCE].append(seconds)
                for w in args.workers:
                    out = root / f"out-{r}-{w}"
                    seconds, written = transform_pass(model, folder, out, w)
                    times[f"transform, {w} process(es)"].append(seconds)
                    difference = max_difference(written, answers)
                    print(f"  transform with {w} process(es): largest difference from the endpoint's answers "
                          f"{difference:.2e}", flush=True)  # fmt: skip
                print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
        finally:
            stop_endpoint("bench-transform", root / "endpoints")
    print(f"\nwall time for {len(images)} images ({args.rounds} rounds; the answers differ from the endpoint's by the "
          "largest difference printed per round: 0 when the transform runs MXNet on as many threads as the endpoint):")
    reference = times[REFERENCE]
    for name, values in times.items():
        ratios = [ref / v for ref, v in zip(reference, values, strict=True)]
        per_image = 1000 * statistics.median(values) / len(images)
        ratio = "" if name == REFERENCE else (f"  speed-up vs reference: median {statistics.median(ratios):.2f}x "
                                              f"(min {min(ratios):.2f}, max {max(ratios):.2f})")  # fmt: skip
        print(f"  {name:28s} {spread(values)}  {per_image:6.1f} ms/image{ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
