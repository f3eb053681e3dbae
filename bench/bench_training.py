"""Benchmark: the local trainer's speed against a plain GluonCV SSD training loop, and its quality runs.

``throughput`` (default) trains the same network (base, input size, batch) twice in this process:

* reference: the GluonCV recipe of ``scripts/detection/ssd/train_ssd.py`` — ``RecordFileDetection``,
  ``SSDDefaultTrainTransform`` (per-sample targets, its default random colour/expand/crop/flip
  augmentation), a Gluon ``DataLoader`` with worker processes, ``SSDMultiBoxLoss``, a hybridized net;
* ours: :func:`include.training.ssd_trainer.train_ssd` on a :class:`RecordChannel` loader (flip only,
  batched target generation, one prefetch thread),

and prints images/s of each (after warm-up), the ratio, and each one's time per epoch split into
waiting for data and compute. Wall times on a CPU shared with other processes are pessimistic; the
CPU seconds used are printed too.

``quality`` runs the pipeline's training stage (``pipeline_training.train``: the ``local`` profile
unless ``--hp`` overrides) on a RecordIO build and prints the validation mAP curve against time:

* ``--data sample``: the embedded sample data set (300 images, drawn shapes) built by the pipeline
  (generate -> ingest -> quality gate -> RecordIO, 256 px, flipped training copies);
* ``--data bccd``: /work/shared/datasets/bccd (Pascal VOC blood cells) through the same stages, originals kept;
* ``--data PATH``: any RecordIO build output folder.

Usage::

    .venv/bin/python bench/bench_training.py throughput [--base mobilenet-1.0] [--image-shape 256] [--batch 16]
    .venv/bin/python bench/bench_training.py quality --data sample --budget 300
    .venv/bin/python bench/bench_training.py quality --data bccd --budget 900 --hp image_shape=384
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "training"))
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")

BCCD = ROOT.parent / "shared" / "datasets" / "bccd" / "BCCD"


def cpu_seconds() -> float:
    """CPU time of this process and its live children (the reference loop's data-loader workers)."""
    import psutil

    me = psutil.Process()
    return sum(sum(p.cpu_times()[:2]) for p in [me, *me.children(recursive=True)])


def reference_loop(net: Any, rec: Path, image_shape: int, batch: int, batches: int, warmup: int) -> dict[str, float]:
    """GluonCV's SSD training recipe for ``warmup + batches`` batches; the timed part's figures."""
    import mxnet as mx
    from gluoncv.data import RecordFileDetection
    from gluoncv.data.batchify import Stack, Tuple
    from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform
    from gluoncv.loss import SSDMultiBoxLoss

    with mx.autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, image_shape, image_shape)))
    dataset = RecordFileDetection(str(rec)).transform(SSDDefaultTrainTransform(image_shape, image_shape, anchors))
    data = mx.gluon.data.DataLoader(dataset, batch, shuffle=True, batchify_fn=Tuple(Stack(), Stack(), Stack()),
                                    last_batch="rollover", num_workers=1)
    net.hybridize(static_alloc=True, static_shape=True)
    trainer = mx.gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.001, "wd": 0.0005})
    loss_fn = SSDMultiBoxLoss()
    data_s = compute_s = 0.0
    done = 0
    cpu0 = cpu_seconds()
    while done < warmup + batches:
        tick = time.perf_counter()
        for batch_arrays in data:
            # as train_ssd.py's split_and_load: worker batches live in shared memory
            x, cls_targets, box_targets = (a.as_in_context(mx.cpu()) for a in batch_arrays)
            loaded = time.perf_counter()
            if done == warmup:
                data_s = compute_s = 0.0
                cpu0 = cpu_seconds()
            data_s += loaded - tick
            with mx.autograd.record():
                cls_preds, box_preds, _ = net(x)
                total, cls_loss, box_loss = loss_fn(cls_preds, box_preds, cls_targets, box_targets)
                mx.autograd.backward(total)
            trainer.step(1)
            float(cls_loss[0].sum().asscalar())
            tick = time.perf_counter()
            compute_s += tick - loaded
            done += 1
            if done == warmup + batches:
                break
    return {"images": batches * batch, "data_s": data_s, "compute_s": compute_s, "cpu_s": cpu_seconds() - cpu0}


def our_loop(net: Any, data: Path, image_shape: int, batch: int, hp_overrides: dict[str, str]) -> dict[str, float]:
    """The local trainer for two epochs; the second epoch's figures (the first warms up)."""
    from include.training.hyperparameters import validate_hyperparameters
    from include.training.recordio_data import Batchify, RecordChannel, loader
    from include.training.ssd_trainer import train_ssd

    with tempfile.TemporaryDirectory() as tmp:
        train = RecordChannel(data / "train", Path(tmp) / "a")
        validation = RecordChannel(data / "validation", Path(tmp) / "b")
        hp = validate_hyperparameters({
            "num_classes": str(len(net.classes)), "num_training_samples": str(len(train)), "epochs": "2",
            "base_network": "mobilenet-1.0", "image_shape": str(image_shape), "mini_batch_size": str(batch),
            "optimizer": "adam", **hp_overrides,
        })
        marks: dict[str, list[float]] = {"#throughput": [], "Epoch ": []}  # end of training, end of validation

        def emit(line: str) -> None:
            for prefix, times in marks.items():
                if line.startswith(prefix):
                    times.append(cpu_seconds())

        outcome, _ = train_ssd(
            net, loader(train, batch, Batchify(image_shape, 0.5), shuffle=True, workers=1),
            loader(validation, batch, Batchify(image_shape), shuffle=False, workers=1), hp, list(net.classes), emit,
        )
    last = outcome.epochs[-1]
    return {"images": last.records, "data_s": last.data_seconds, "compute_s": last.compute_seconds,
            "cpu_s": marks["#throughput"][1] - marks["Epoch "][0]}


def throughput(args: argparse.Namespace) -> None:
    from synthetic_shapes import write_shapes_recordio

    from include.training.ssd_network import build_ssd

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        batches = args.batches
        write_shapes_recordio(data, batches * args.batch // 2, args.batch, size=(args.image_shape, args.image_shape),
                              num_classes=3, seed=5)
        classes = ["circle", "square", "triangle"]
        print(f"{args.base} SSD at {args.image_shape}px, batch {args.batch}, {batches} timed batches, "
              f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, load average {os.getloadavg()[0]:.1f}")
        ref = reference_loop(build_ssd(args.base, args.image_shape, classes, False, lambda _: None),
                             data / "train" / "train.rec", args.image_shape, args.batch, batches, warmup=3)
        ours = our_loop(build_ssd(args.base, args.image_shape, classes, False, lambda _: None), data,
                        args.image_shape, args.batch, {"base_network": args.base})
    for name, run in (("GluonCV reference loop", ref), ("local trainer", ours)):
        wall = run["data_s"] + run["compute_s"]
        print(f"{name:24s} {run['images'] / wall:6.2f} images/s  epoch of {run['images']} images: "
              f"{wall:6.1f} s = data {run['data_s']:5.1f} s + compute {run['compute_s']:6.1f} s; "
              f"{run['images'] / run['cpu_s']:.2f} images per CPU second")
    speed = {name: run["images"] / (run["data_s"] + run["compute_s"]) for name, run in (("ref", ref), ("ours", ours))}
    ratio = speed["ours"] / speed["ref"]
    print(f"ratio local/reference: {ratio:.2f}x (target >= 0.9)")


def build_dataset(name: str, work: Path) -> Path:
    """A RecordIO build output for ``name`` (sample, bccd or an existing folder)."""
    if name not in ("sample", "bccd"):
        return Path(name)
    from include.preprocess.ingest import ingest
    from include.preprocess.quality import validate
    from include.preprocess.recordio import build_recordio

    if name == "sample":
        from include.preprocess.sample_data import generate_sample

        source, fmt, resize, policy = generate_sample(work / "dataset", n_images=300, seed=42), "cub", 256, "fail"
    else:
        source, fmt, resize, policy = BCCD, "voc", None, "drop"  # BCCD has two zero-area boxes
    ingest(fmt, str(source), str(work / "ingest"), validation_fraction=0.2, seed=42)
    validate(str(work / "ingest"), str(work / "quality"), policy=policy)
    build_recordio(str(work / "quality"), str(work / "recordio"), resize=resize, flip="train", shards=1)
    return work / "recordio"


def quality(args: argparse.Namespace) -> None:
    from include.training.pipeline_training import train

    overrides = dict(pair.split("=", 1) for pair in args.hp)
    with tempfile.TemporaryDirectory() as tmp:
        data = build_dataset(args.data, Path(tmp))
        started, cpu0 = time.monotonic(), cpu_seconds()
        record = train(str(data), str(Path(tmp) / "out"), overrides, job_name="bench-quality",
                       max_runtime_s=args.budget)
        wall = time.monotonic() - started
    hp = record["HyperParameters"]
    print(f"data {args.data}; {hp['base_network']} {hp['image_shape']}px batch {hp['mini_batch_size']} "
          f"{hp['optimizer']} lr {hp['learning_rate']} epochs {hp['epochs']}; budget {args.budget} s; "
          f"load average {os.getloadavg()[0]:.1f}")
    elapsed = cpu = 0.0
    for epoch in record["Epochs"]:
        elapsed += epoch["train_seconds"] + epoch["validation_seconds"]
        cpu += epoch["cpu_seconds"]
        print(f"  epoch {epoch['epoch']:2d}  mAP {epoch['validation_map']:.4f}  at {elapsed:6.0f} s of training, "
              f"{cpu:6.0f} training CPU s (data {epoch['data_seconds']:.1f} s, "
              f"compute {epoch['compute_seconds']:.1f} s, validation {epoch['validation_seconds']:.1f} s)")
    print(f"status {record['TrainingJobStatus']} ({record['SecondaryStatus']}); best mAP "
          f"{record.get('BestValidationMAP')} at epoch {record.get('BestEpoch')}; per class "
          f"{json.dumps(record.get('BestClassAP'))}; job {wall:.0f} s wall (this process {cpu_seconds() - cpu0:.0f} "
          "CPU s, the trainer runs in a child process)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    speed = sub.add_parser("throughput")
    speed.add_argument("--base", default="mobilenet-1.0")
    speed.add_argument("--image-shape", type=int, default=256)
    speed.add_argument("--batch", type=int, default=16)
    speed.add_argument("--batches", type=int, default=8)
    run = sub.add_parser("quality")
    run.add_argument("--data", default="sample", help="sample, bccd or a RecordIO build output folder")
    run.add_argument("--budget", type=int, default=300, help="MaxRuntimeInSeconds of the job")
    run.add_argument("--hp", action="append", default=[], help="NAME=VALUE hyperparameter override")
    args = parser.parse_args()
    if args.mode == "quality":
        quality(args)
    else:
        throughput(args if args.mode else parser.parse_args(["throughput"]))


if __name__ == "__main__":
    main()
