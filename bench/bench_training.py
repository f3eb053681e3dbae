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
* ``--data bccd-wbc``: 200 BCCD images with white blood cells, that class only, 20 % held out for
  validation and 15 % for test: a single-class set of real photographs (:func:`bccd_single_class`);
* ``--data PATH``: any RecordIO build output folder.

With ``--pretrained`` every net starts from the base network's ImageNet weights (fine-tuning; the
weights cache, ``../shared/models/mobilenet1.0-imagenet`` unless ``DETECTION_PRETRAINED_DIR`` says
otherwise), and ``--freeze PATTERN`` adds a third run of the local trainer with those layers frozen
(the local profile's ``freeze_layer_pattern``; the reference loop always trains every layer).

``quality`` with ``--compare`` trains twice in the same process on the same data and budget: with the
ImageNet weights, then as the product does without any (an empty cache, no download: the local
profile's from-scratch fallback, ``--scratch-hp`` changing its settings), and prints both curves
against wall time and training CPU time (the machine is shared: CPU seconds / 2 is what 2
dedicated cores would need at best). Where the build has a test split, each run's model (its
best validation epoch) is then scored on it, as the promotion gate does.

Usage::

    .venv/bin/python -m bench.bench_training throughput [--base mobilenet-1.0] [--image-shape 256] [--batch 8]
    .venv/bin/python -m bench.bench_training throughput --pretrained --image-shape 320 --batch 8 \\
        --freeze '^mobilenet\\d+_(conv|batchnorm)([0-9]|10)_'
    .venv/bin/python -m bench.bench_training quality --data sample --budget 300
    .venv/bin/python -m bench.bench_training quality --data bccd --budget 900 --compare
    .venv/bin/python -m bench.bench_training quality --data bccd-wbc --budget 600 --compare --target 0.85
"""

from __future__ import annotations

import argparse
import contextlib
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

from tests.support.shared_data import BCCD, SHARED

SHARED_WEIGHTS = SHARED / "models" / "mobilenet1.0-imagenet"  # benchmarks may use it as the weights cache
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


def our_rounds(
    net: Any, data: Path, image_shape: int, batch: int, base: str, frozen: str = ""
) -> Iterator[dict[str, float]]:
    """The local trainer's epochs (as ``train_ssd`` runs them, ``frozen`` matching layers frozen); after a
    warm-up epoch, each next epoch's figures."""
    from include.training.hyperparameters import validate_hyperparameters
    from include.training.recordio_data import Batchify, RecordChannel, loader
    from include.training.ssd_network import freeze
    from include.training.ssd_trainer import NMS_TOPK, POST_NMS, TrainingStep, train_epoch

    freeze(net, frozen)
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
    weights = None
    if args.pretrained:  # fine-tuning: every net starts from the same ImageNet file
        from include.training.pretrained import resolve

        os.environ.setdefault("DETECTION_PRETRAINED_DIR", str(SHARED_WEIGHTS))
        weights = resolve(args.base).path
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        write_shapes_recordio(data, args.batches * args.batch // 2, args.batch,
                              size=(args.image_shape, args.image_shape), num_classes=3, seed=5)
        print(f"{args.base} SSD at {args.image_shape}px, batch {args.batch}, {args.batches} batches per round, "
              f"{args.rounds} alternating rounds, {'fine-tuning from ' + str(weights) if weights else 'from scratch'}, "
              f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, load average {os.getloadavg()[0]:.1f}")
        runs = {
            "GluonCV reference loop": reference_rounds(
                build_ssd(args.base, args.image_shape, classes, weights),
                data / "train" / "train.rec", args.image_shape, args.batch, args.batches),
            "local trainer": our_rounds(build_ssd(args.base, args.image_shape, classes, weights),
                                        data, args.image_shape, args.batch, args.base),
        }
        if args.freeze:
            runs["local trainer, frozen"] = our_rounds(build_ssd(args.base, args.image_shape, classes, weights),
                                                       data, args.image_shape, args.batch, args.base, args.freeze)
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
    ref, ref_cpu = best["GluonCV reference loop"]
    for name in (n for n in best if n.startswith("local")):
        ours, ours_cpu = best[name]
        print(f"ratio {name}/reference: {ours / ref:.2f}x wall (best round), {ours_cpu / ref_cpu:.2f}x per CPU "
              "second (target >= 0.9)")
    if args.freeze:
        print(f"frozen: {args.freeze!r} (the reference loop trains every layer)")


def bccd_single_class(work: Path, class_name: str = "WBC", images: int = 200, seed: int = 42) -> Path:
    """A Pascal VOC folder of ``images`` BCCD images that show ``class_name`` (copies), without BCCD's split lists.

    It stands in for "a single-class photo set of about 200 images": ingest keeps only that class
    and splits off 20 % for validation and 15 % for test, as it would for a user's own photographs.
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


def _curve(record: dict[str, Any], target: float) -> dict[str, Any]:
    """Print a job's validation mAP per epoch against time; its best mAP and when it first reached ``target``."""
    hp = record["HyperParameters"]
    weights = record.get("PretrainedWeights") or {}
    start = f"ImageNet weights sha256 {weights['sha256'][:12]}" if weights else (
        f"from scratch ({record.get('PretrainedFallback') or 'use_pretrained_model=0'})")
    print(f"  {hp['base_network']} {hp['image_shape']}px batch {hp['mini_batch_size']} {hp['optimizer']} lr "
          f"{hp['learning_rate']} epochs {hp['epochs']} step {hp.get('lr_scheduler_step') or '-'} freeze "
          f"{hp.get('freeze_layer_pattern') or '-'}; {start}")
    elapsed = cpu = 0.0
    reached = None
    for epoch in record["Epochs"]:
        elapsed += epoch["train_seconds"] + epoch["validation_seconds"]
        cpu += epoch["cpu_seconds"] + epoch["validation_cpu_seconds"]
        if reached is None and epoch["validation_map"] >= target:
            reached = (epoch["epoch"], elapsed, cpu)
        print(f"    epoch {epoch['epoch']:2d}  mAP {epoch['validation_map']:.4f}  at {elapsed:6.0f} s wall, "
              f"{cpu:6.0f} CPU s of training and validation (>= {cpu / 2:5.0f} s on 2 cores); CE "
              f"{epoch['cross_entropy']:.3f} (batch median {epoch['cross_entropy_median']:.3f}, "
              f"{epoch['batches']} batches)")
    when = (f"epoch {reached[0]} at {reached[1]:.0f} s wall, {reached[2]:.0f} CPU s" if reached else "never")
    print(f"  {record['TrainingJobStatus']} ({record.get('StopReason')}); best mAP {record.get('BestValidationMAP')}"
          f" at epoch {record.get('BestEpoch')}; reached {target}: {when}; per class "
          f"{json.dumps(record.get('BestClassAP'))}")
    return {"best": record.get("BestValidationMAP") or 0.0, "reached": reached}


@contextlib.contextmanager
def _no_weights(work: Path) -> Iterator[None]:
    """No ImageNet weights anywhere (an empty cache, no download): the product's offline fallback."""
    names = ("DETECTION_PRETRAINED_DIR", "MXNET_HOME", "DETECTION_PRETRAINED_DOWNLOAD")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(DETECTION_PRETRAINED_DIR=str(work / "no-weights"), MXNET_HOME=str(work / "no-weights"),
                      DETECTION_PRETRAINED_DOWNLOAD="0")
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)


def quality(args: argparse.Namespace) -> None:
    """Train with the local profile (ImageNet weights from the cache); with ``--compare`` also without weights."""
    from include.training.pipeline_training import run_training

    os.environ.setdefault("DETECTION_PRETRAINED_DIR", str(SHARED_WEIGHTS))
    overrides = dict(pair.split("=", 1) for pair in args.hp)
    scratch_overrides = {**overrides, **dict(pair.split("=", 1) for pair in args.scratch_hp)}
    runs = ("pretrained", "scratch") if args.compare else ("pretrained",)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = build_dataset(args.data, Path(tmp))
        print(f"data {args.data} ({data}); budget {args.budget} s wall per job; weights cache "
              f"{os.environ['DETECTION_PRETRAINED_DIR']}; load average {os.getloadavg()[0]:.1f}")
        for name in runs:
            started, load = time.monotonic(), os.getloadavg()[0]
            with _no_weights(Path(tmp)) if name == "scratch" else contextlib.nullcontext():
                record = run_training(str(data), str(Path(tmp) / name),
                                      scratch_overrides if name == "scratch" else overrides,
                                      job_name=f"bench-{name}", max_runtime_s=args.budget)
            print(f"{name}: job {time.monotonic() - started:.0f} s wall, load average {load:.1f} at the start, "
                  f"{os.getloadavg()[0]:.1f} at the end")
            results[name] = _curve(record, args.target)
        if args.compare:
            ratio = results["pretrained"]["best"] / max(results["scratch"]["best"], 1e-9)
            print(f"best validation mAP within the same budget: pretrained {results['pretrained']['best']:.4f}, "
                  f"from scratch {results['scratch']['best']:.4f} (ratio {ratio:.2f}x)")
        if (data / "test").is_dir():  # the promotion gate's figure: the exported model on the held-out split
            from include.evaluation.evaluate import evaluate

            for name in runs:
                scored = evaluate(str(Path(tmp) / name), str(data), str(Path(tmp) / f"{name}-evaluation"), samples=0)
                print(f"{name}: {scored['split']} mAP@0.5 {scored['map']:.4f} on {scored['images']} images "
                      "(the model of its best validation epoch)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    speed = sub.add_parser("throughput")
    speed.add_argument("--base", default="mobilenet-1.0")
    speed.add_argument("--image-shape", type=int, default=256)
    speed.add_argument("--batch", type=int, default=16)
    speed.add_argument("--batches", type=int, default=8, help="batches per round (one local-trainer epoch)")
    speed.add_argument("--rounds", type=int, default=3)
    speed.add_argument("--pretrained", action="store_true", help="fine-tune: every net starts from ImageNet weights")
    speed.add_argument("--freeze", default="", help="also time the local trainer with these layers frozen")
    run = sub.add_parser("quality")
    run.add_argument("--data", default="sample", help="sample, bccd, bccd-wbc or a RecordIO build output folder")
    run.add_argument("--budget", type=int, default=300, help="MaxRuntimeInSeconds of the job")
    run.add_argument("--hp", action="append", default=[], help="NAME=VALUE hyperparameter override")
    run.add_argument("--compare", action="store_true", help="also train without ImageNet weights, same budget")
    run.add_argument("--scratch-hp", action="append", default=[], help="NAME=VALUE for the from-scratch run only")
    run.add_argument("--target", type=float, default=0.8, help="report when validation mAP first reaches this")
    args = parser.parse_args()
    if args.mode == "quality":
        quality(args)
    else:
        throughput(args if args.mode else parser.parse_args(["throughput"]))


if __name__ == "__main__":
    main()
