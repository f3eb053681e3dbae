"""``detection-pipeline invoke --draw``: an endpoint's detections drawn on their image, with the model's class names.

The drawing itself is :func:`include.evaluation.samples.draw_detections`, the evaluation samples' one.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Sequence

from include import storage
from include.run_layout import CLASSES_FILE


def _classes_text(artifact_uri: str) -> tuple[str, str]:
    """Where ``classes.json`` was found (for messages) and its text."""
    if storage.isdir(artifact_uri):
        source = storage.join(artifact_uri, CLASSES_FILE)
        return source, storage.read_text(source)
    with storage.open_read(artifact_uri) as handle, tarfile.open(fileobj=handle, mode="r|gz") as tar:
        for member in tar:
            if os.path.normpath(member.name) == CLASSES_FILE:
                return f"{artifact_uri}!{CLASSES_FILE}", tar.extractfile(member).read().decode("utf-8")
    raise ValueError(f"{artifact_uri} has no {CLASSES_FILE}")


def read_classes(artifact_uri: str) -> dict[int, str]:
    """Class names (``{id: name}``) from the ``classes.json`` of a model.tar.gz or its unpacked folder."""
    source, text = _classes_text(artifact_uri)
    try:
        return {int(k): str(v) for k, v in json.loads(text).items()}
    except (json.JSONDecodeError, ValueError, AttributeError) as exc:
        raise ValueError(f'{source}: expected a JSON object {{"<class id>": "<name>"}} ({exc})') from exc


def save_drawing(
    image_bytes: bytes,
    detections: Sequence[Sequence[float]],
    out_uri: str,
    classes: dict[int, str] | None = None,
    threshold: float = 0.5,
) -> dict:
    """Draw the ``detections`` scoring at least ``threshold`` on the encoded image; write it to ``out_uri`` (atomic).

    PNG or JPEG by the extension. Returns ``{"path": <normalized URI>, "drawn": <boxes drawn>}``.
    """
    import numpy as np

    from include.evaluation.samples import draw_detections
    from include.model_artifact import decode_image

    extension = os.path.splitext(out_uri)[1].lower()
    if extension not in (".png", ".jpg", ".jpeg"):
        raise ValueError(f"{out_uri}: the drawing is written as .png or .jpg, not {extension or '(no extension)'}")
    rows = np.asarray(detections, dtype=float).reshape(-1, 6)
    drawing = draw_detections(decode_image(image_bytes), rows, None, classes or {}, threshold)
    if extension != ".png":
        import cv2

        ok, encoded = cv2.imencode(extension, cv2.imdecode(np.frombuffer(drawing, np.uint8), cv2.IMREAD_COLOR))
        if not ok:
            raise ValueError(f"{out_uri}: OpenCV could not encode the drawing as {extension}")
        drawing = encoded.tobytes()
    return {"path": storage.write_bytes(out_uri, drawing), "drawn": int((rows[:, 1] >= threshold).sum())}
