"""Benchmark: the local trainer's speed against a plain GluonCV SSD training loop, and its quality runs.

``throughput`` (default) trains the same network (base, input size, batch) twice in this process:

* reference: the GluonCV recipe of ``scripts/detection/ssd/train_ssd.py`` — ``RecordFileDetection``,
  ``SSDDefaultTrainTransform`` (per-sample targets, its default random colour/expand/crop/flip
  augmentation), a Gluon ``DataLoader`` with worker processes, ``SSDMultiBoxLoss``, a hybridized net;
* ours: :func:`include.training.ssd_trainer.train_ssd` on a :class:`RecordChannel` loader (flip only,
  batched target generation, one prefetch thread),

in alternating rounds (one local-trainer epoch, the same number of reference batches) after a
warm-up, and prints each one's best round in images/s with its time split into waiting for data
and compute, the median images per CPU second, and the ratios. On a CPU shared with other
processes wall times are noisy and pessimistic; images per CPU second (this process and its
data-loader workers) is the steadier comparison.

``quality`` runs the pipeline's training stage (``pipeline_training.train``: the ``local`` profile
unless ``--hp`` overrides) on a RecordIO build and prints the validation mAP curve against time:

* ``--data sample``: the embedded sample data set (300 images, drawn shapes) built by the pipeline
  (generate -> ingest -> quality gate -> RecordIO, 256 px, flipped training copies);
* ``--data bccd``: ../shared/datasets/bccd (Pascal VOC blood cells) through the same stages, originals kept;
* ``--data PATH``: any RecordIO build output folder.

Usage::

    .venv/bin/python -m bench.bench_training throughput [--base mobilenet-1.0] [--image-shape 256] [--batch 8]
    .venv/bin/python -m bench.bench_training quality --data sample --budget 300
    .venv/bin/python -m bench.bench_training quality --data bccd --budget 900 --hp image_shape=384
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.shared_data import BCCD

DATASETS = ("sample", "bccd", "bccd-wbc")

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")


def cpu_seconds() -> float:
    """CPU time of this process and its live children (the reference loop's data-loader workers)."""
    import psutil

    me = psutil.Process()
    return sum(sum(p.cpu_times()[:2]) for p in [me, *me.children(recursive=True)])


def reference_rounds(net: Any, rec: Path, image_shape: int, batch: int, batches: int) -> Iterator[dict[str, float]]:
    """GluonCV's SSD training recipe; after 3 warm-up batches, the figures of each next ``batches`` batches."""
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

    def endless() -> Iterator[Any]:
        while True:
            yield from data

    source = endless()
    figures = {"images": 0.0, "data_s": 0.0, "compute_s": 0.0, "cpu_s": cpu_seconds()}
    for done in itertools.count(1):
        tick = time.perf_counter()
        # as train_ssd.py's split_and_load: worker batches live in shared memory
        x, cls_targets, box_targets = (a.as_in_context(mx.cpu()) for a in next(source))
        loaded = time.perf_counter()
        with mx.autograd.record():
            cls_preds, box_preds, _ = net(x)
            total, cls_loss, box_loss = loss_fn(cls_preds, box_preds, cls_targets, box_targets)
            mx.autograd.backward(total)
        trainer.step(1)
        float(cls_loss[0].sum().asscalar())
        figures["images"] += len(x)
        figures["data_s"] += loaded - tick
        figures["compute_s"] += time.perf_counter() - loaded
        if done == 3 or (done > 3 and (done - 3) % batches == 0):
            if done > 3:
                yield {**figures, "cpu_s": cpu_seconds() - figures["cpu_s"]}
            figures = {"images": 0.0, "data_s": 0.0, "compute_s": 0.0, "cpu_s": cpu_seconds()}


def our_rounds(net: Any, data: Path, image_shape: int, batch: int, base: str) -> Iterator[dict[str, float]]:
    """The local trainer's epochs (as ``train_ssd`` runs them); after a warm-up epoch, each next epoch's figures."""
    from include.training.hyperparameters import validate_hyperparameters
    from include.training.recordio_data import Batchify, RecordChannel, loader
    from include.training.ssd_trainer import NMS_TOPK, POST_NMS, TrainingStep, train_epoch

    with tempfile.TemporaryDirectory() as tmp:
        train = RecordChannel(data / "train", Path(tmp))
        hp = validate_hyperparameters({
            "num_classes": str(len(net.classes)), "num_training_samples": str(len(train)), "base_network": base,
            "image_shape": str(image_shape), "mini_batch_size": str(batch), "optimizer": "adam",
        })
        step = TrainingStep.create(net, hp)
        batches = loader(train, batch, Batchify(image_shape, 0.5), shuffle=True, workers=1)
        for epoch in itertools.count():
            net.set_nms(nms_thresh=hp["nms_threshold"], nms_topk=NMS_TOPK, post_nms=POST_NMS)  # as every epoch
            cpu0 = cpu_seconds()
            stats = train_epoch(step, batches, epoch, hp["learning_rate"], lambda _: None)
            if epoch:
                yield {"images": stats.records, "data_s": stats.data_seconds, "compute_s": stats.compute_seconds,
                       "cpu_s": cpu_seconds() - cpu0}


def throughput(args: argparse.Namespace) -> None:
    from include.training.ssd_network import build_ssd
    from tests.support.synthetic_shapes import write_shapes_recordio

    classes = ["circle", "square", "triangle"]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        write_shapes_recordio(data, args.batches * args.batch // 2, args.batch,
                              size=(args.image_shape, args.image_shape), num_classes=3, seed=5)
        print(f"{args.base} SSD at {args.image_shape}px, batch {args.batch}, {args.batches} batches per round, "
              f"{args.rounds} alternating rounds, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
              f"load average {os.getloadavg()[0]:.1f}")
        runs = {
            "GluonCV reference loop": reference_rounds(
                build_ssd(args.base, args.image_shape, classes),
                data / "train" / "train.rec", args.image_shape, args.batch, args.batches),
            "local trainer": our_rounds(build_ssd(args.base, args.image_shape, classes),
                                        data, args.image_shape, args.batch, args.base),
        }
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                rounds[name].append(next(run))
    best = {}
    for name, results in rounds.items():
        top = max(results, key=lambda r: r["images"] / (r["data_s"] + r["compute_s"]))
        wall = top["data_s"] + top["compute_s"]
        per_cpu = statistics.median(r["images"] / r["cpu_s"] for r in results)
        best[name] = (top["images"] / wall, per_cpu)
        print(f"{name:24s} best {top['images'] / wall:6.2f} images/s: {top['images']:.0f} images in {wall:6.1f} s = "
              f"data {top['data_s']:5.1f} s + compute {top['compute_s']:6.1f} s; median {per_cpu:.2f} images per CPU s")
    (ours, ours_cpu), (ref, ref_cpu) = best["local trainer"], best["GluonCV reference loop"]
    print(f"ratio local/reference: {ours / ref:.2f}x wall (best round), {ours_cpu / ref_cpu:.2f}x per CPU second "
          "(target >= 0.9)")


def bccd_single_class(work: Path, class_name: str = "WBC", images: int = 200, seed: int = 42) -> Path:
    """A Pascal VOC folder of ``images`` BCCD images that show ``class_name`` (copies), without BCCD's split lists.

    It stands in for "a single-class photo set of about 200 images": ingest keeps only that class
    and splits off 20 % for validation, as it would for a user's own photographs.
    """
    import random

    from lxml import etree

    names = sorted(p.stem for p in (BCCD / "Annotations").glob("*.xml")
                   if class_name in {o.findtext("name", "").strip()
                                     for o in etree.parse(str(p)).getroot().iter("object")})
    chosen = sorted(random.Random(seed).sample(names, min(images, len(names))))
    root = work / f"bccd-{class_name.lower()}"
    for folder, suffix in (("Annotations", ".xml"), ("JPEGImages", ".jpg")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in chosen:
            shutil.copyfile(BCCD / folder / f"{name}{suffix}", root / folder / f"{name}{suffix}")
    return root


def build_dataset(name: str, work: Path) -> Path:
    """A RecordIO build output for ``name`` (sample, bccd, bccd-wbc or an existing folder)."""
    if name not in DATASETS:
        return Path(name)
    from include.preprocess.ingest import ingest
    from include.preprocess.quality.gate import validate
    from include.preprocess.recordio import build_recordio

    classes = None
    if name == "sample":
        from include.preprocess.sample_data import generate_sample

        source, fmt, resize, policy = generate_sample(work / "dataset", n_images=300, seed=42), "cub", 256, "fail"
    elif name == "bccd":
        source, fmt, resize, policy = BCCD, "voc", None, "drop"  # BCCD has two zero-area boxes
    else:
        source, fmt, resize, policy, classes = bccd_single_class(work), "voc", None, "drop", ["WBC"]
    ingest(fmt, str(source), str(work / "ingest"), classes=classes, validation_fraction=0.2, seed=42)
    validate(str(work / "ingest"), str(work / "quality"), policy=policy)
    build_recordio(str(work / "quality"), str(work / "recordio"), resize=resize, flip="train", shards=1)
    return work / "recordio"


def quality(args: argparse.Namespace) -> None:
    from include.training.pipeline_training import run_training

    overrides = dict(pair.split("=", 1) for pair in args.hp)
    with tempfile.TemporaryDirectory() as tmp:
        data = build_dataset(args.data, Path(tmp))
        started, cpu0 = time.monotonic(), cpu_seconds()
        record = run_training(str(data), str(Path(tmp) / "out"), overrides, job_name="bench-quality",
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
    speed.add_argument("--batches", type=int, default=8, help="batches per round (one local-trainer epoch)")
    speed.add_argument("--rounds", type=int, default=3)
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
