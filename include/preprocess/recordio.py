"""The ``.lst`` + MXNet RecordIO build: ``train/``, ``validation/`` and ``test/`` channels from the canonical table.

Output under ``output_uri``::

    train/train.rec  train/train.idx  train/train.lst
    validation/validation.rec  validation/validation.idx  validation/validation.lst
    test/test.rec  test/test.idx  test/test.lst     (the held-out split; absent when it is empty)
    recordio.json    (records, objects, bytes and sha256 per file, options, label width needed)
    classes.json     (the input table's class map, so the folder trains on its own)

The records are in the format ``im2rec.py --pack-label`` writes from the same ``.lst`` (byte
for byte its records with ``decoder="exact"``, or without a resize as ``--pass-through``): an
``IRHeader`` with ``flag = len(label)``, ``id`` = the record id, then the whole label
``[2, 5, cls, xmin, ymin, xmax, ymax, ...]`` as float32 (parsed from the ``.lst`` text, as
im2rec does), then the JPEG bytes; framed as dmlc RecordIO (``mxnet.recordio.MXRecordIO``)
with an ``MXIndexedRecordIO`` ``.idx``, both by the one codec (:mod:`include.recordio_codec`).

The work splits into shards for Airflow dynamic task mapping: ``plan_shards`` (one task)
-> ``build_shard`` (one mapped task per spec, each with a process pool) -> ``merge_shards``
(one task: concatenates the shards' ``.rec`` bytes and re-offsets their ``.idx``, or moves a
single shard's files into place; checksums are taken while the shards are written). Records
are ordered and numbered at planning time, so the merged files are identical whatever the
shard and worker counts. Every file is written under a temporary name and renamed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import IO, Any

from include import storage
from include.preprocess import annotations, augment, lst
from include.preprocess.workers import ordered_map, process_pool
from include.recordio_codec import HEADER_WIDTH, OBJECT_WIDTH, frame, pack
from include.run_layout import CLASSES_FILE, RECORDIO_SUMMARY
from include.training.hyperparameters import DEFAULT_LABEL_WIDTH

log = logging.getLogger(__name__)

WORK_DIR = "_shards"
PLAN_FILE = "plan.json"
COPY_CHUNK = 8 << 20
KINDS = ("rec", "idx", "lst")


class ShardError(ValueError):
    """Shard specs or results are inconsistent with the plan."""


@dataclass(frozen=True)
class Options:
    """Build options shared by every shard (all JSON-able)."""

    resize: int | None = None
    quality: int = 95
    flip: str = "train"
    label_width: int = DEFAULT_LABEL_WIDTH
    decoder: str = "fast"

    def __post_init__(self) -> None:
        lst.check_flip(self.flip)
        augment.check_decoder(self.decoder)
        if self.resize is not None and (not isinstance(self.resize, int) or self.resize <= 0):
            raise ValueError(f"resize must be a positive integer or None, got {self.resize!r}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be within 1..100, got {self.quality!r}")


def _unit(records: list[tuple[int, lst.Record]]) -> dict[str, Any]:
    """A work unit: one source image and the records (itself, its mirrored copy) built from it."""
    _, first = records[0]
    return {
        "uri": first.uri,
        "where": f"image {first.source} ({first.uri})",
        "size": [first.width, first.height],
        "lines": [lst.lst_line(i, r) for i, r in records],
        "flipped": [r.flipped for _, r in records],
    }


def _units(records: list[lst.Record]) -> list[dict[str, Any]]:
    units: list[list[tuple[int, lst.Record]]] = []
    for i, record in enumerate(records):
        if units and units[-1][0][1].source == record.source:
            units[-1].append((i, record))
        else:
            units.append([(i, record)])
    return [_unit(u) for u in units]


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    bounds = [n * k // parts for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def shard_uri(output_uri: str, shard: int) -> str:
    """The folder of one shard's work list and files (under the build's ``_shards/``)."""
    return storage.join(output_uri, WORK_DIR, f"shard-{shard:05d}")


#: The records' format as this code writes them; part of the build's cache key (bump it when the bytes change).
FORMAT_VERSION = 1
#: The image stack whose decoders and encoders shape the records' bytes (their versions are in the cache key).
IMAGE_LIBRARIES = ("simplejpeg", "opencv-python-headless", "pillow", "numpy")


@dataclass(frozen=True)
class Plan:
    """A planned build: the records per split in order, and everything that determines the output's bytes."""

    input_uri: str
    options: Options
    units: dict[str, list[dict[str, Any]]]
    stats: dict[str, dict[str, int]]
    label_width_required: int
    classes: dict[str, str]
    image_hashes: dict[str, str]  # image URI -> SHA-256 of the file the record is made from

    def content(self) -> dict[str, Any]:
        """What the build's bytes depend on, without run ids or paths: per split, each unit's ``.lst`` lines
        with its image's content hash; the class map, the options, this format's and the image stack's versions.
        (Not the shard and worker counts: the output does not depend on them.)"""
        from importlib.metadata import PackageNotFoundError, version

        def installed(name: str) -> str | None:
            try:
                return version(name)
            except PackageNotFoundError:
                return None

        return {
            "format_version": FORMAT_VERSION,
            "libraries": {name: installed(name) for name in IMAGE_LIBRARIES},
            "options": vars(self.options),
            "classes": self.classes,
            "splits": {
                split: [[u["lines"], u["flipped"], u["size"], self.image_hashes[u["uri"]]] for u in units]
                for split, units in self.units.items()
            },
        }


def plan_build(input_uri: str, **opts: Any) -> Plan:
    """Read and check the gated table and plan its records; writes nothing.

    ``opts`` are :class:`Options` fields. Raises :class:`lst.LabelWidthError` when ``label_width``
    cannot hold the image with the most objects, and :class:`lst.AnnotationTableError` for unusable
    rows or an empty split. The table is read with pyarrow alone (:func:`annotations.read_columns`):
    no pandas import here.
    """
    options = Options(**opts)
    from include.preprocess.quality.gate import check_gate_passed

    check_gate_passed(input_uri)  # a table the gate refused is never built (the CLI also requires one it passed)
    table = annotations.read_columns(input_uri, lst.COLUMNS)
    classes = annotations.read_classes(input_uri)
    needed = lst.check_label_width(table, options.label_width)
    channels = lst.plan_records(table, options.flip)
    empty = [split for split in annotations.TRAINING_SPLITS if not channels[split]]
    if empty:
        raise lst.AnnotationTableError(f"{input_uri}: no images in split(s) {', '.join(empty)}")
    if not channels["test"]:
        log.warning("%s: no test images: no test/ channel, evaluation will score validation", input_uri)
    channels = {split: records for split, records in channels.items() if records}
    stats = {
        split: {
            "records": len(records),
            "images": sum(not r.flipped for r in records),
            "flipped": sum(r.flipped for r in records),
            "objects": sum(len(r.boxes) for r in records),
        }
        for split, records in channels.items()
    }
    return Plan(
        input_uri=storage.normalize(input_uri),
        options=options,
        units={split: _units(records) for split, records in channels.items()},
        stats=stats,
        label_width_required=needed,
        classes={str(k): v for k, v in sorted(classes.items())},
        image_hashes=_image_hashes(input_uri, table["image_uri"]),
    )


def _image_hashes(input_uri: str, image_uris: list[str]) -> dict[str, str]:
    """SHA-256 of each image file: the gate's ``content_hash`` column, else read from the files."""
    try:
        hashes = annotations.read_columns(input_uri, ["image_uri", "content_hash"])
        known = dict(zip(hashes["image_uri"], hashes["content_hash"], strict=True))
    except ValueError:  # a table written before the gate recorded hashes
        known = {}
    return {uri: known.get(uri) or hashlib.sha256(storage.read_bytes(uri)).hexdigest() for uri in set(image_uris)}


def _spec(plan: Plan, output_uri: str, shard: int, shards: int, workers: int | None, work_uri: str) -> dict:
    return {
        "shard": shard,
        "shards": shards,
        "output_uri": storage.normalize(output_uri),
        "work_uri": work_uri,
        "options": vars(plan.options),
        "workers": workers,
    }


def write_plan(
    plan: Plan, output_uri: str, shards: int, workers: int | None = None, cache_key: str | None = None
) -> list[dict]:
    """Write the plan and one work list per shard under ``output_uri``; the specs for :func:`build_shard`.

    One spec per shard (Airflow maps over them), each running ``workers`` processes (default: all
    CPUs; fewer when several mapped shard tasks share one machine). ``cache_key`` is carried into
    ``recordio.json``.
    """
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    for folder in (output_uri, *(storage.join(output_uri, split) for split in annotations.SPLITS)):
        if removed := storage.remove_stale_temporaries(folder):  # left by a killed merge
            log.warning("%s: removed temporaries a killed build left: %s", folder, ", ".join(removed))
    summary = {
        "input_uri": plan.input_uri,
        "options": vars(plan.options),
        "shards": shards,
        "channels": plan.stats,
        "max_objects": (plan.label_width_required - HEADER_WIDTH) // OBJECT_WIDTH,
        "label_width_required": plan.label_width_required,
        "classes": plan.classes,
        "cache_key": cache_key,
    }
    storage.write_text(storage.join(output_uri, WORK_DIR, PLAN_FILE), json.dumps(summary, indent=2))
    ranges = {split: _split(len(u), shards) for split, u in plan.units.items()}
    specs = []
    for shard in range(shards):
        work = {split: plan.units[split][slice(*ranges[split][shard])] for split in plan.units}
        work_uri = storage.write_text(storage.join(shard_uri(output_uri, shard), "work.json"), json.dumps(work))
        specs.append(_spec(plan, output_uri, shard, shards, workers, work_uri))
    return specs


def finished_specs(plan: Plan, output_uri: str, shards: int, workers: int | None = None) -> list[dict]:
    """Specs for a build already in place under ``output_uri`` (a cache hit): no work lists are written, so
    each :func:`build_shard` answers ``finished`` and :func:`merge_shards` the build's summary."""
    if finished_build(output_uri) is None:
        raise ShardError(f"{output_uri} holds no finished build")
    missing = storage.join(output_uri, WORK_DIR, "finished", "work.json")
    return [_spec(plan, output_uri, shard, shards, workers, missing) for shard in range(shards)]


def plan_shards(input_uri: str, output_uri: str, shards: int, workers: int | None = None, **opts: Any) -> list[dict]:
    """Plan the build and write one work list per shard: :func:`plan_build`, then :func:`write_plan`."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    return write_plan(plan_build(input_uri, **opts), output_uri, shards, workers)


def render_unit(job: tuple[dict[str, Any], dict[str, Any]]) -> list[bytes]:
    """Framed records of one work unit (runs in a worker process)."""
    unit, options = job
    parsed = [lst.parse_lst_line(line, unit["where"]) for line in unit["lines"]]
    images = augment.render(
        augment.read_image(unit["uri"]),
        unit["flipped"],
        *unit["size"],
        resize=options["resize"],
        quality=options["quality"],
        decoder=options["decoder"],
        where=unit["where"],
    )
    return [frame(pack(label, record_id, image)) for (record_id, label, _), image in zip(parsed, images, strict=True)]


class _HashingFile:
    """A binary file being written, with the size and sha256 of what was written so far."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh, self.digest, self.bytes = fh, hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.digest.update(data)
        self.bytes += len(data)

    def summary(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "sha256": self.digest.hexdigest()}


class _ChannelWriter:
    """Appends framed records to a shard's .rec/.idx/.lst temporaries."""

    def __init__(self, stack: ExitStack, uris: dict[str, str]) -> None:
        self.files = {
            kind: _HashingFile(stack.enter_context(open(stack.enter_context(storage.atomic_local_path(uri)), "wb")))
            for kind, uri in uris.items()
        }
        self.records = 0

    def write(self, line: str, framed: bytes) -> None:
        record_id = line.split("\t", 1)[0]
        self.files["idx"].write(f"{record_id}\t{self.files['rec'].bytes}\n".encode())
        self.files["lst"].write(line.encode())
        self.files["rec"].write(framed)
        self.records += 1


def build_shard(spec: dict, workers: int | None = None, folder: str | None = None) -> dict:
    """Build one shard's ``.rec``/``.idx``/``.lst`` per channel (``.idx`` offsets local to the shard).

    Images are decoded, resized, flipped and encoded by ``workers`` processes (default: the
    spec's, else all CPUs). The files go to the shard's folder (:func:`shard_uri`) or to
    ``folder`` (a Processing job's local output folder). Returns a JSON-able result for :func:`merge_shards`.
    """
    with process_pool(workers or spec.get("workers")) as pool:
        return _build_shard(spec, pool, folder)


def _build_shard(spec: dict, pool: ProcessPoolExecutor | None, folder: str | None = None) -> dict:
    result: dict[str, Any] = {"shard": spec["shard"], "shards": spec["shards"], "channels": {}}
    if not storage.exists(spec["work_uri"]):
        if finished_build(spec["output_uri"]) is not None:  # merged already: the merge's retry finds it
            return {**result, "finished": True}
        raise ShardError(f"{spec['work_uri']} is missing and no finished build is there: plan the build again")
    work = json.loads(storage.read_text(spec["work_uri"]))
    options = spec["options"]
    target = folder or shard_uri(spec["output_uri"], spec["shard"])
    jobs = [(split, unit) for split in work for unit in work[split]]
    with ExitStack() as stack:
        writers = {
            split: _ChannelWriter(stack, {k: storage.join(target, f"{split}.{k}") for k in KINDS}) for split in work
        }
        framed_units = ordered_map(render_unit, [(unit, options) for _, unit in jobs], pool)
        for (split, unit), framed in zip(jobs, framed_units, strict=True):
            for line, record in zip(unit["lines"], framed, strict=True):
                writers[split].write(line, record)
    for split, writer in writers.items():
        result["channels"][split] = {
            "uri": target,
            "records": writer.records,
            "files": {kind: file.summary() for kind, file in writer.files.items()},
        }
    return result


def _write(target: str, chunks: Iterable[bytes]) -> dict[str, Any]:
    """Write byte chunks to ``target`` atomically; returns its size and sha256."""
    with storage.atomic_local_path(target) as tmp, open(tmp, "wb") as out:
        written = _HashingFile(out)
        for data in chunks:
            written.write(data)
    return written.summary()


def _read_chunks(uris: list[str]) -> Iterator[bytes]:
    for uri in uris:
        with storage.open_read(uri) as fh:
            while data := fh.read(COPY_CHUNK):
                yield data


def _reoffset(idx_text: str, base: int) -> bytes:
    out = []
    for line in idx_text.splitlines():
        key, offset = line.split("\t")
        out.append(f"{key}\t{int(offset) + base}\n")
    return "".join(out).encode()


def _merge_channel(output_uri: str, split: str, parts: list[dict]) -> dict[str, dict[str, Any]]:
    """One channel's final files from its shard parts: moved when there is one part, else concatenated."""
    folder = storage.join(output_uri, split)
    names = {kind: f"{split}.{kind}" for kind in KINDS}
    if len(parts) == 1:
        (part,) = parts
        for kind, name in names.items():
            source, target = storage.join(part["uri"], name), storage.join(folder, name)
            if storage.exists(source) or not storage.exists(target):
                storage.move(source, target)
            elif storage.size(target) != part["files"][kind]["bytes"]:  # moved by an earlier attempt?
                raise ShardError(f"{source} is gone and {target} is not the shard's file")
        return {name: part["files"][kind] for kind, name in names.items()}
    shard_files = {kind: [storage.join(p["uri"], name) for p in parts] for kind, name in names.items()}
    bases = [sum(p["files"]["rec"]["bytes"] for p in parts[:k]) for k in range(len(parts))]
    idx = (_reoffset(storage.read_text(uri), base) for uri, base in zip(shard_files["idx"], bases, strict=True))
    return {
        names["rec"]: _write(storage.join(folder, names["rec"]), _read_chunks(shard_files["rec"])),
        names["idx"]: _write(storage.join(folder, names["idx"]), idx),
        names["lst"]: _write(storage.join(folder, names["lst"]), _read_chunks(shard_files["lst"])),
    }


def merge_shards(output_uri: str, shard_results: list[dict]) -> dict:
    """Concatenate the shards into one ``.rec``/``.idx``/``.lst`` per channel, write ``recordio.json``.

    Removes the shards' work files afterwards. Returns the build summary; run again once the
    work files are gone, it returns the finished build's (see :func:`finished_build`).
    """
    plan_uri = storage.join(output_uri, WORK_DIR, PLAN_FILE)
    if not storage.exists(plan_uri):
        if (done := finished_build(output_uri)) is not None:
            return _result(output_uri, done)
        raise ShardError(f"{plan_uri} is missing and {output_uri} holds no finished build: plan the build again")
    plan = json.loads(storage.read_text(plan_uri))
    results = sorted(shard_results, key=lambda r: r["shard"])
    if [r["shard"] for r in results] != list(range(plan["shards"])):
        got = [r["shard"] for r in results]
        raise ShardError(f"{output_uri}: expected results of shards 0..{plan['shards'] - 1}, got {got}")
    channels: dict[str, Any] = {}
    for split in plan["channels"]:
        parts = [r["channels"][split] for r in results]
        records = sum(p["records"] for p in parts)
        if records != plan["channels"][split]["records"]:
            raise ShardError(
                f"{output_uri}: {split} shards hold {records} records, the plan has "
                f"{plan['channels'][split]['records']}"
            )
        channels[split] = {**plan["channels"][split], "files": _merge_channel(output_uri, split, parts)}
    summary = {
        "format": "mxnet-recordio, im2rec --pack-label",
        "input_uri": plan["input_uri"],
        "options": {**plan["options"], "shards": plan["shards"]},
        "max_objects": plan["max_objects"],
        "label_width_required": plan["label_width_required"],
        "channels": channels,
        "cache_key": plan.get("cache_key"),
    }
    classes = json.dumps(plan["classes"], indent=2)
    storage.write_text(storage.join(output_uri, CLASSES_FILE), classes)  # the channels' class map
    storage.write_text(storage.join(output_uri, RECORDIO_SUMMARY), json.dumps(summary, indent=2) + "\n")
    storage.remove(storage.join(output_uri, WORK_DIR), recursive=True)
    return _result(output_uri, summary)


def _result(output_uri: str, summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "output_uri": storage.normalize(output_uri),
        "summary_uri": storage.join(output_uri, RECORDIO_SUMMARY),
        "records": {split: channel["records"] for split, channel in summary["channels"].items()},
        "label_width_required": summary["label_width_required"],
    }


def finished_build(output_uri: str) -> dict[str, Any] | None:
    """The summary of the build already merged under ``output_uri`` (every file at its recorded size), else None.

    A task retried after the merge removed the work files (a cleared or re-run mapped task, a
    merge that died after its last write) finds the build done here instead of failing.
    """
    summary_uri = storage.join(output_uri, RECORDIO_SUMMARY)
    if not storage.exists(summary_uri):
        return None
    summary = json.loads(storage.read_text(summary_uri))
    for split, channel in summary["channels"].items():
        for name, file in channel["files"].items():
            uri = storage.join(output_uri, split, name)
            if not storage.exists(uri) or storage.size(uri) != file["bytes"]:
                return None
    return summary


def build_recordio(
    input_uri: str,
    output_uri: str,
    resize: int | None = None,
    quality: int = 95,
    flip: str = "train",
    shards: int = 1,
    workers: int | None = None,
    label_width: int = DEFAULT_LABEL_WIDTH,
    decoder: str = "fast",
) -> dict:
    """Build the ``train``/``validation`` RecordIO channels and ``recordio.json`` in one call.

    ``resize``: shorter side to N as ``im2rec --resize`` (None: JPEGs pass through);
    ``quality``: JPEG quality of re-encoded images; ``flip``: mirrored copies for
    ``"train"`` (default), ``"all"`` or ``"none"``; ``decoder``: ``"fast"`` or ``"exact"``
    (byte-identical to im2rec, see :mod:`include.preprocess.augment`); ``shards`` run one after another here
    (Airflow runs them as mapped tasks) on one pool of ``workers`` processes (default: all CPUs).
    """
    options = Options(resize=resize, quality=quality, flip=flip, label_width=label_width, decoder=decoder)
    with process_pool(workers) as pool:  # the workers start while the table is read and planned
        specs = plan_shards(input_uri, output_uri, shards, **vars(options))
        results = [_build_shard(spec, pool) for spec in specs]
    return merge_shards(output_uri, results)
