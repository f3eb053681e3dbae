"""Pre-labels from a transform's output: the model's boxes as the next labelling round's starting point.

Three files, written with the export writers' own pieces (:mod:`include.preprocess.writers`,
:func:`include.preprocess.readers.groundtruth.groundtruth_line`), so the class ids, box conventions and
labelling config match what ``detection-pipeline export`` writes:

- ``coco/instances.json``: a COCO instances file (every scored image, boxes with their ``score``, categories
  ``class_id + 1``) that pycocotools loads, and ``coco/results.json``, the same boxes as a COCO results list
  (``COCO.loadRes``);
- ``labelstudio/tasks.json``: one task per image whose ``predictions`` hold the boxes with their scores (Label
  Studio shows them as pre-annotations to accept or correct), beside ``labelstudio/label_config.xml``;
- ``groundtruth/output.manifest``: Ground Truth's output manifest, each box's ``confidence`` its score and
  ``human-annotated: no``.

Boxes scoring under ``score_threshold`` are left out; images without a box kept are still listed (someone has
to look at them). Inputs with an error record are not. Box coordinates come from the ``.out`` (normalized)
times the image's size, read from its header.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from include import storage
from include.transform.outputs import TransformOutput

log = logging.getLogger(__name__)

PRELABEL_FORMATS = ("coco", "labelstudio", "groundtruth")
COCO_INSTANCES = "coco/instances.json"
COCO_RESULTS = "coco/results.json"
LABELSTUDIO_TASKS = "labelstudio/tasks.json"
LABELSTUDIO_CONFIG = "labelstudio/label_config.xml"
GROUNDTRUTH_MANIFEST = "groundtruth/output.manifest"


@dataclass(frozen=True)
class ScoredImage:
    """One scored input: its path under the input prefix, URI, size and kept boxes
    ``(class_id, score, xmin, ymin, xmax, ymax)`` in pixels, best first."""

    path: str
    uri: str
    width: int
    height: int
    boxes: list[tuple[int, float, float, float, float, float]]


def image_size(uri: str) -> tuple[int, int]:
    """``(width, height)`` from the image's header (no decode)."""
    from PIL import Image

    with storage.open_read(uri) as fh, Image.open(fh) as image:
        return image.size


def scored_images(transform: TransformOutput, score_threshold: float, threads: int = 8) -> list[ScoredImage]:
    """The transform's answered inputs with their boxes in pixels, in path order."""
    paths = sorted(transform.answers)
    with ThreadPoolExecutor(threads) as pool:
        sizes = list(pool.map(image_size, [transform.input_uri(p) for p in paths]))
    images = []
    for path, (width, height) in zip(paths, sizes, strict=True):
        boxes = [
            (int(c), float(s), x0 * width, y0 * height, x1 * width, y1 * height)
            for c, s, x0, y0, x1, y1 in transform.answers[path]
            if s >= score_threshold and x1 > x0 and y1 > y0
        ]
        images.append(ScoredImage(path, transform.input_uri(path), width, height, boxes))
    return images


def coco_documents(images: Sequence[ScoredImage], classes: dict[int, str], job: str) -> tuple[dict, list]:
    """The COCO instances document (boxes with ``score``) and the results list of the same boxes."""
    from include.preprocess.writers.coco import coco_annotation, coco_instances

    entries, annotations = [], []
    for image_id, image in enumerate(images, start=1):
        entries.append({"id": image_id, "file_name": image.path, "width": image.width, "height": image.height})
        for class_id, score, *box in image.boxes:
            annotation = coco_annotation(len(annotations) + 1, image_id, class_id, tuple(box))
            annotations.append({**annotation, "score": score})
    results = [{k: a[k] for k in ("image_id", "category_id", "bbox", "score")} for a in annotations]
    return coco_instances(f"pre-labels of transform {job}", entries, annotations, classes), results


def labelstudio_tasks(
    images: Sequence[ScoredImage], classes: dict[int, str], job: str, image_root_url: str | None
) -> list[dict[str, Any]]:
    """One Label Studio task per image with the model's boxes as a scored prediction (``model_version``: the job)."""
    from include.preprocess.writers.labelstudio import region

    tasks = []
    for n, image in enumerate(images, start=1):
        result = [
            {**region(f"p{n}r{k}", tuple(box), classes[class_id], image.width, image.height),
             "score": score}
            for k, (class_id, score, *box) in enumerate(image.boxes, start=1)
        ]  # fmt: skip
        score = sum(r["score"] for r in result) / len(result) if result else 0.0
        tasks.append(
            {
                "data": {"image": _image_url(image, image_root_url)},
                "predictions": [{"model_version": job, "score": score, "result": result}],
            }
        )
    return tasks


def _image_url(image: ScoredImage, image_root_url: str | None) -> str:
    """The task's image: ``image_root_url`` + its path, else the S3 URI (Label Studio's cloud storage) or a
    local-files URL relative to the input folder (``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` set to it)."""
    from include.preprocess.writers.labelstudio import LOCAL_FILES

    if image_root_url is not None:
        return image_root_url + quote(image.path)
    return image.uri if not storage.is_local(image.uri) else LOCAL_FILES + quote(image.path)


def groundtruth_lines(
    images: Sequence[ScoredImage], classes: dict[int, str], job: str, label_attribute: str
) -> list[str]:
    """Ground Truth output-manifest lines: the boxes as ``(class, left, top, width, height)``, scores as confidences."""
    from include.preprocess.readers.groundtruth import groundtruth_line

    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    lines = []
    for image in images:
        objects = [(c, x0, y0, x1 - x0, y1 - y0) for c, _, x0, y0, x1, y1 in image.boxes]
        confidences = [s for _, s, *_ in image.boxes]
        lines.append(groundtruth_line(image.uri, (image.width, image.height, 3), objects, classes, label_attribute,
                                      job, created, confidences=confidences, human_annotated=False))  # fmt: skip
    return lines


def write_prelabels(
    transform: TransformOutput,
    classes: dict[int, str],
    output: str,
    *,
    score_threshold: float,
    formats: Sequence[str] = PRELABEL_FORMATS,
    label_attribute: str = "bounding-box",
    image_root_url: str | None = None,
) -> dict[str, Any]:
    """Write the pre-labels of ``transform`` in ``formats`` under ``output``; a summary with the files."""
    from include.preprocess.writers.labelstudio import label_config

    unknown = sorted(set(formats) - set(PRELABEL_FORMATS))
    if unknown:
        raise ValueError(f"unknown pre-label format(s) {', '.join(unknown)}; expected {', '.join(PRELABEL_FORMATS)}")
    job, output = str(transform.record.get("TransformJobName", "transform")), storage.normalize(output)
    images = scored_images(transform, score_threshold)
    strangers = sorted({c for image in images for c, *_ in image.boxes} - set(classes))
    if strangers:
        raise ValueError(f"{transform.uri}: class ids {strangers} are not the model's ({classes}): wrong classes?")
    files: dict[str, str] = {}
    if "coco" in formats:
        instances, results = coco_documents(images, classes, job)
        files["coco"] = storage.write_text(storage.join(output, COCO_INSTANCES), json.dumps(instances))
        files["coco_results"] = storage.write_text(storage.join(output, COCO_RESULTS), json.dumps(results))
    if "labelstudio" in formats:
        tasks = labelstudio_tasks(images, classes, job, image_root_url)
        files["labelstudio"] = storage.write_text(storage.join(output, LABELSTUDIO_TASKS), json.dumps(tasks, indent=1))
        files["labelstudio_config"] = storage.write_text(storage.join(output, LABELSTUDIO_CONFIG),
                                                         label_config(classes))  # fmt: skip
    if "groundtruth" in formats:
        lines = groundtruth_lines(images, classes, job, label_attribute)
        files["groundtruth"] = storage.write_text(storage.join(output, GROUNDTRUTH_MANIFEST),
                                                  "".join(line + "\n" for line in lines))  # fmt: skip
    boxes = sum(len(i.boxes) for i in images)
    log.info("pre-labels of %d images (%d boxes at score >= %s, %d images without one; %d inputs with errors left "
             "out) in %s", len(images), boxes, score_threshold, sum(not i.boxes for i in images),
             len(transform.errors), output)  # fmt: skip
    return {
        "output": output,
        "transform": transform.uri,
        "images": len(images),
        "boxes": boxes,
        "images_without_boxes": sum(not i.boxes for i in images),
        "left_out_with_errors": len(transform.errors),
        "score_threshold": score_threshold,
        "files": files,
    }
