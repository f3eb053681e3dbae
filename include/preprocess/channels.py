"""The two other SageMaker object-detection input formats, from the same canonical table.

* Augmented manifest (Pipe mode): ``train/train.manifest`` and
  ``validation/validation.manifest``, JSON Lines in Ground Truth's bounding-box output
  format: ``source-ref`` (the image URI) and ``<label attribute>`` (``image_size`` and pixel
  ``annotations``) plus ``<label attribute>-metadata`` (class map, type). Mirrored copies
  are written under ``images/flipped/<image>`` and referenced from the manifest.
* Image + JSON (File mode): ``train/``, ``validation/`` hold the images at their relative
  paths (mirrored copies at ``flipped/<image>``), ``train_annotation/`` and
  ``validation_annotation/`` one ``<image path without extension>.json`` each, whose
  ``file`` is the image's path inside its channel.
* JumpStart (File mode, ``training.algorithm: jumpstart``): one ``training/`` channel of the train
  split's source images, ``training/images/`` and ``training/annotations.json``
  (:mod:`include.preprocess.readers.jumpstart`); JumpStart's script splits off its own validation
  images and augments, so there are no mirrored copies; the class map goes beside the channel.

The held-out test split, when the table has one, is written the same way (``test/``,
``test_annotation/``) for evaluation and export; no training request names it. Record order,
flip policy and flipped names are those of the RecordIO build (:mod:`lst`).
Mirrored copies keep their source's format. Images are copied by ``workers`` processes.

:func:`build_training_channels` writes either format under ``<output>/manifest/`` or
``<output>/image-json/`` with ``channels.json``: each channel's URI and content type and the
input mode, which is what a CreateTrainingJob request needs (see
:mod:`include.training.pipeline_training`). Folder channels end with ``/``: an S3 prefix
``.../train`` would also take in ``.../train_annotation/``.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

from include import storage
from include.preprocess import annotations, augment, lst
from include.preprocess.workers import ordered_map, process_pool
from include.run_layout import CLASSES_FILE

MANIFEST_TYPE = "groundtruth/object-detection"
CHANNELS_FILE = "channels.json"
FORMAT_FOLDERS = {"augmented-manifest": "manifest", "image-json": "image-json", "jumpstart": "jumpstart"}
RECORDIO_CONTENT_TYPE = "application/x-recordio"
IMAGE_CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
ANY_IMAGE = "application/x-image"  # what the algorithm takes for a mix of JPEG and PNG


def _num(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _pixel_annotations(record: lst.Record) -> list[dict[str, int | float]]:
    return [
        {
            "class_id": b.class_id,
            "left": _num(b.xmin),
            "top": _num(b.ymin),
            "width": _num(b.xmax - b.xmin),
            "height": _num(b.ymax - b.ymin),
        }
        for b in record.boxes
    ]


def _image_size(record: lst.Record) -> list[dict[str, int]]:
    return [{"width": record.width, "height": record.height, "depth": record.depth}]


def write_copies(job: dict[str, Any]) -> int:
    """Write one source image's copies and texts (runs in a worker process); returns the files written."""
    data = augment.read_image(job["uri"]) if job["images"] else b""
    for target, flipped in job["images"]:
        if flipped:
            ext = posixpath.splitext(target)[1] or ".jpg"
            storage.write_bytes(target, augment.mirror(data, *job["size"], ext, job["quality"], job["where"]))
        else:
            storage.write_bytes(target, data)
    for target, text in job["texts"]:
        storage.write_text(target, text)
    return len(job["images"]) + len(job["texts"])


def _jobs(
    records: list[lst.Record], images: dict[str, str], texts: dict[str, tuple[str, str]], quality: int
) -> list[dict[str, Any]]:
    """One job per source image: the image copies (``images``: record path -> target) and ``texts`` of its records."""
    jobs: dict[str, dict[str, Any]] = {}
    for r in records:
        job = jobs.setdefault(
            r.source,
            {
                "uri": storage.normalize(r.uri),
                "size": [r.width, r.height],
                "quality": quality,
                "where": f"image {r.source} ({r.uri})",
                "images": [],
                "texts": [],
            },
        )
        if r.path in images:
            job["images"].append([images[r.path], r.flipped])
        if r.path in texts:
            job["texts"].append(list(texts[r.path]))
    return [job for job in jobs.values() if job["images"] or job["texts"]]


def _plan(input_uri: str, flip: str) -> tuple[dict[str, list[lst.Record]], dict[int, str]]:
    """Records of the non-empty splits (a data set may have no test images) and the class map."""
    planned = lst.plan_records(annotations.read_columns(input_uri, lst.COLUMNS), flip)
    return {split: records for split, records in planned.items() if records}, annotations.read_classes(input_uri)


def build_manifest_channels(
    input_uri: str,
    output_uri: str,
    label_attribute: str = "bounding-box",
    flip: str = "train",
    quality: int = 95,
    workers: int | None = None,
) -> dict:
    """Write ``<split>/<split>.manifest`` (Ground Truth JSON Lines) per split; returns URIs and counts.

    Use with ``S3DataType: AugmentedManifestFile`` and ``AttributeNames: ["source-ref", label_attribute]``.
    """
    channels, classes = _plan(input_uri, flip)
    class_map = {str(k): v for k, v in sorted(classes.items())}
    targets = {
        r.path: storage.join(output_uri, "images", r.path)
        for records in channels.values()
        for r in records
        if r.flipped
    }
    jobs = [job for records in channels.values() for job in _jobs(records, targets, {}, quality)]
    with process_pool(workers) as pool:
        written = sum(ordered_map(write_copies, jobs, pool))
    result: dict[str, Any] = {"attribute_names": ["source-ref", label_attribute], "flipped_images": written}
    for split, records in channels.items():
        lines = []
        for r in records:
            entry = {
                "source-ref": targets[r.path] if r.flipped else storage.normalize(r.uri),
                label_attribute: {"image_size": _image_size(r), "annotations": _pixel_annotations(r)},
                f"{label_attribute}-metadata": {
                    "objects": [{"confidence": 1.0} for _ in r.boxes],
                    "class-map": class_map,
                    "type": MANIFEST_TYPE,
                    "human-annotated": "yes",
                },
            }
            lines.append(json.dumps(entry, separators=(",", ":")) + "\n")
        uri = storage.write_text(storage.join(output_uri, split, f"{split}.manifest"), "".join(lines))
        result[split] = {"uri": uri, "records": len(records)}
    return result


def build_image_json_channels(
    input_uri: str,
    output_uri: str,
    flip: str = "train",
    quality: int = 95,
    workers: int | None = None,
) -> dict:
    """Write ``<split>/`` and ``<split>_annotation/`` per non-empty split; returns URIs and counts."""
    channels, classes = _plan(input_uri, flip)
    categories = [{"class_id": k, "name": v} for k, v in sorted(classes.items())]
    result: dict[str, Any] = {}
    jobs = []
    for split, records in channels.items():
        images = {r.path: storage.join(output_uri, split, r.path) for r in records}
        texts = {
            r.path: (
                storage.join(output_uri, f"{split}_annotation", posixpath.splitext(r.path)[0] + ".json"),
                json.dumps(
                    {
                        "file": r.path,
                        "image_size": _image_size(r),
                        "annotations": _pixel_annotations(r),
                        "categories": categories,
                    },
                    indent=1,
                ),
            )
            for r in records
        }
        jobs += _jobs(records, images, texts, quality)
        result[split] = {"uri": storage.join(output_uri, split), "records": len(records)}
        result[f"{split}_annotation"] = {"uri": storage.join(output_uri, f"{split}_annotation")}
    with process_pool(workers) as pool:
        result["files_written"] = sum(ordered_map(write_copies, jobs, pool))
    types = {
        IMAGE_CONTENT_TYPES.get(posixpath.splitext(r.path)[1].lower(), ANY_IMAGE)
        for rs in channels.values()
        for r in rs
    }
    result["content_type"] = types.pop() if len(types) == 1 else ANY_IMAGE
    return result


def build_jumpstart_channel(input_uri: str, output_uri: str, workers: int | None = None) -> dict[str, Any]:
    """Write ``training/images/`` and ``training/annotations.json`` of the train split, ``classes.json`` beside."""
    from include.preprocess.readers.jumpstart import ANNOTATIONS, IMAGES, jumpstart_annotations

    channels, classes = _plan(input_uri, "none")
    channel = storage.join(output_uri, "training")
    records = channels["train"]
    names = {r.path: f"{n:06d}-{posixpath.basename(r.path)}" for n, r in enumerate(records)}  # flat and unique
    images = [{"file_name": names[r.path], "height": r.height, "width": r.width, "id": n}
              for n, r in enumerate(records)]
    boxes = [
        {"image_id": n, "bbox": [_num(b.xmin), _num(b.ymin), _num(b.xmax), _num(b.ymax)], "category_id": b.class_id}
        for n, r in enumerate(records)
        for b in r.boxes
    ]
    targets = {r.path: storage.join(channel, IMAGES, names[r.path]) for r in records}
    with process_pool(workers) as pool:
        written = sum(ordered_map(write_copies, _jobs(records, targets, {}, 95), pool))
    storage.write_text(storage.join(channel, ANNOTATIONS), json.dumps(jumpstart_annotations(images, boxes)))
    class_map = {str(k): v for k, v in sorted(classes.items())}
    storage.write_text(storage.join(output_uri, CLASSES_FILE), json.dumps(class_map))
    return {"training": {"uri": channel + "/", "records": len(records), "images_written": written}}


def build_training_channels(
    input_uri: str,
    output_uri: str,
    channel_format: str,
    label_attribute: str = "bounding-box",
    flip: str = "train",
    quality: int = 95,
    workers: int | None = None,
) -> dict[str, Any]:
    """Write the ``augmented-manifest``, ``image-json`` or ``jumpstart`` channels and ``channels.json``.

    Returns what ``channels.json`` holds: ``format``, ``input_mode``, ``label_attribute`` (manifests)
    and per channel its ``uri`` and ``content_type``.
    """
    if channel_format not in FORMAT_FOLDERS:
        raise ValueError(f"channel format must be one of {', '.join(FORMAT_FOLDERS)}, got {channel_format!r}")
    folder = storage.join(output_uri, FORMAT_FOLDERS[channel_format])
    description: dict[str, Any] = {"format": channel_format}
    if channel_format == "jumpstart":
        built = build_jumpstart_channel(input_uri, folder, workers)
        description |= {"input_mode": "File", "channels": {"training": {**built["training"], "content_type": None}}}
    elif channel_format == "augmented-manifest":
        built = build_manifest_channels(input_uri, folder, label_attribute, flip, quality, workers)
        description |= {"input_mode": "Pipe", "label_attribute": label_attribute}
        description["channels"] = {
            split: {
                "uri": built[split]["uri"],
                "content_type": RECORDIO_CONTENT_TYPE,
                "records": built[split]["records"],
            }
            for split in annotations.SPLITS
            if split in built
        }
    else:
        built = build_image_json_channels(input_uri, folder, flip, quality, workers)
        description["input_mode"] = "File"
        description["channels"] = {
            name: {"uri": built[name]["uri"] + "/", "content_type": built["content_type"]}
            for split in annotations.SPLITS
            if split in built
            for name in (split, f"{split}_annotation")
        }
        for split in annotations.SPLITS:
            if split in built:
                description["channels"][split]["records"] = built[split]["records"]
    storage.write_text(storage.join(folder, CHANNELS_FILE), json.dumps(description, indent=2))
    return description


def read_training_channels(output_uri: str, channel_format: str) -> dict[str, Any]:
    """The ``channels.json`` :func:`build_training_channels` wrote under ``output_uri`` for ``channel_format``."""
    uri = storage.join(output_uri, FORMAT_FOLDERS[channel_format], CHANNELS_FILE)
    if not storage.exists(uri):
        raise FileNotFoundError(f"{uri}: no {channel_format} channels were built here (recordio.channel_format)")
    return json.loads(storage.read_text(uri))
