"""Benchmark: what the step cache saves on a real data set (BCCD, 364 images, not in the repository).

Runs the whole pipeline in this process (``detection-pipeline run``'s code: ingest, gate,
RecordIO, training, evaluation, deploy, smoke test, teardown) on a copy of BCCD, into a fresh
storage folder:

1. **first**: every step runs (the reference);
2. **again** (``--repeat`` times): the same data and configuration: RecordIO, training and
   evaluation are cache hits; ingest, the gate, deploy, smoke test and teardown still run;
3. **new hyperparameter**: one more epoch: the RecordIO build is reused, training and evaluation run;
4. **one box moved**: one box of one annotation file 2 px wider: everything is built again.

For each it prints wall and CPU seconds, the steps reused, the ratio to the first run, and
whether the deployed model is the first run's (SHA-256 of model.tar.gz).

    .venv/bin/python -m bench.bench_cache [--epochs 2] [--repeat 3]

The machine's CPUs may be shared with other work: figures are wall-clock and noisy (CPU seconds less so).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench.bench_ingest import cpu_seconds
from include.cache_keys import file_sha256
from include.pipeline_run import run_pipeline
from include.project import PROJECT_ROOT

BCCD = PROJECT_ROOT.parent / "shared" / "datasets" / "bccd" / "BCCD"
STEPS = ("recordio", "training", "evaluation")


def _run(name: str, params: dict[str, Any], reference: float | None) -> dict[str, Any]:
    start, cpu = time.perf_counter(), cpu_seconds()
    out = run_pipeline(params, run_id=f"bench-{name}-{time.time_ns()}")
    wall, used = time.perf_counter() - start, cpu_seconds() - cpu
    reused = [step for step in STEPS if (out.get(step) or {}).get("cache", {}).get("hit")]
    ratio = f"{wall / reference:6.1%} of the first" if reference else "reference"
    print(f"{name:<18} {wall:7.1f} s wall {used:7.1f} s CPU  {ratio}  reused: {', '.join(reused) or 'nothing'}"
          f"  mAP {out['evaluation']['map']:.4f}", flush=True)  # fmt: skip
    return {"wall": wall, "cpu": used, "model": file_sha256(out["training"]["artifact_uri"]), "out": out}


def _move_one_box(root: Path) -> str:
    """Widen the first box of the first annotation file by 2 px; the file's name."""
    xml = sorted((root / "Annotations").glob("*.xml"))[0]
    text = xml.read_text()
    match = re.search(r"<xmax>(\d+)</xmax>", text)
    assert match, f"{xml}: no <xmax>"
    xml.write_text(text[: match.start(1)] + str(int(match.group(1)) + 2) + text[match.end(1) :])
    return xml.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="runs on unchanged data after the first")
    args = parser.parse_args()
    if not (BCCD / "Annotations").is_dir():
        raise SystemExit(f"the BCCD data set is not at {BCCD}")
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        data = Path(tmp) / "BCCD"
        shutil.copytree(BCCD, data)
        os.environ.update({
            "DETECTION__STORAGE__BASE_URI": str(Path(tmp) / "runs"),
            "DETECTION__LOCAL__ENDPOINT_STATE_DIR": str(Path(tmp) / "endpoints"),
            "DETECTION__EVALUATION__PROMOTION_THRESHOLD": "0",
            "DETECTION__RECORDIO__RESIZE": "null",
            "DETECTION__TRACKING__LOCAL_DIR": str(Path(tmp) / "mlflow"),
        })  # fmt: skip
        with _tracking_server():
            _compare(data, args)


@contextlib.contextmanager
def _tracking_server() -> Iterator[None]:
    """A local MLflow server of the bench's own (every run is tracked, as ``detection-pipeline run`` does)."""
    from include.configs import load_config
    from include.tracking import server

    cfg = load_config()
    folder = server.local_dir(cfg)
    server.start(folder, server.artifact_root(cfg))
    try:
        yield
    finally:
        server.stop(folder)


def _compare(data: Path, args: argparse.Namespace) -> None:
    """The first run, runs on unchanged data, one with another epoch count and one with a box moved."""
    params = {"backend": "local", "dataset_source": str(data), "dataset_format": "voc", "epochs": args.epochs,
              "deploy": True, "keep_endpoint_minutes": 0, "quality_policy": "drop"}  # fmt: skip
    print(f"BCCD ({len(list((data / 'JPEGImages').glob('*.jpg')))} images), {args.epochs} epochs, "
          f"{os.cpu_count()} CPUs", flush=True)  # fmt: skip
    first = _run("first", params, None)
    again = [_run(f"again {i + 1}", params, first["wall"]) for i in range(args.repeat)]
    ratios = [a["wall"] / first["wall"] for a in again]
    same = all(a["model"] == first["model"] for a in again)
    print(f"unchanged data: {statistics.median(ratios):.1%} of the first run's wall time (median; "
          f"{min(ratios):.1%}-{max(ratios):.1%}), CPU {statistics.median(a['cpu'] for a in again):.1f} s "
          f"vs {first['cpu']:.1f} s; the same model deployed: {same}")  # fmt: skip
    hp = _run("epochs + 1", {**params, "epochs": args.epochs + 1}, first["wall"])
    moved = _move_one_box(data)
    box = _run(f"box in {moved}", params, first["wall"])
    print(
        f"new model after the hyperparameter change: {hp['model'] != first['model']}; "
        f"after the box change: {box['model'] != first['model']}"
    )


if __name__ == "__main__":
    main()
