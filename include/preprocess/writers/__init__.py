"""Writers from the canonical table back to the labelling tools' formats (``detection-pipeline export``).

One module per format; :func:`export` loads the table with its quarantined boxes and flags
(:mod:`.base`), writes the annotations and copies the images, so the export is a folder the
tool imports and the pipeline ingests again (a round trip gives the same table).
"""

from __future__ import annotations

import logging
from typing import Any

from include import storage

WRITER_FORMATS = ("coco", "yolo", "voc", "labelstudio", "cvat")

log = logging.getLogger(__name__)


def export(
    fmt: str,
    input_uri: str,
    output_uri: str,
    quality_uri: str | None = None,
    label_issues_uri: str | None = None,
    images: str = "copy",
    image_root_url: str | None = None,
) -> dict[str, Any]:
    """Write the table under ``input_uri`` (a validate or ingest output) in ``fmt`` to ``output_uri``.

    ``quality_uri``: the quality gate's folder whose findings flag boxes (default: the input's
    own quality.json); ``label_issues_uri``: an evaluation folder whose label_issues.json flags
    boxes; ``images``: copy or link; ``image_root_url``: Label Studio's image URL prefix.
    """
    from include.preprocess.writers.base import copy_images, load, write_suggestions
    from include.preprocess.writers.coco import write_coco
    from include.preprocess.writers.cvat import write_cvat
    from include.preprocess.writers.labelstudio import LOCAL_FILES, write_labelstudio
    from include.preprocess.writers.voc import write_voc
    from include.preprocess.writers.yolo import write_yolo

    writers = {"coco": write_coco, "yolo": write_yolo, "voc": write_voc, "cvat": write_cvat}
    if fmt not in (*writers, "labelstudio"):
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(WRITER_FORMATS)}")
    if image_root_url is not None and fmt != "labelstudio":
        raise ValueError(f"image_root_url applies to the labelstudio format, not {fmt!r}")

    data = load(input_uri, quality_uri, label_issues_uri)
    output_uri = storage.normalize(output_uri)
    if fmt == "labelstudio":
        targets, files = write_labelstudio(data, output_uri, image_root_url or LOCAL_FILES)
    else:
        targets, files = writers[fmt](data, output_uri)
        if (suggestions := write_suggestions(data, output_uri)) is not None:
            files.append(suggestions)
    copied = copy_images(targets, images)
    summary = {
        "format": fmt,
        "output": output_uri,
        "images": copied,
        "boxes": len(data.table),
        "quarantined_boxes": int(data.table["quarantined"].sum()),
        "flagged_boxes": data.flagged,
        "suggested_boxes": len(data.suggestions),
        "files": files if len(files) <= 20 else [*files[:20], f"... {len(files) - 20} more"],
    }
    log.info(
        "exported %s boxes (%s flagged) of %s images as %s to %s",
        summary["boxes"],
        summary["flagged_boxes"],
        copied,
        fmt,
        output_uri,
    )
    return summary
