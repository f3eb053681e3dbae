"""Detections drawn on their image, as the SageMaker notebook shows them (boxes above a score threshold)."""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Sequence
from typing import TYPE_CHECKING

from include import storage
from include.model_artifact import CLASSES_FILE

if TYPE_CHECKING:
    import numpy as np

#: Distinct RGB colours, cycled by class id.
_PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230))


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


def draw_detections(
    image: np.ndarray, detections: Sequence[Sequence[float]], classes: dict[int, str], threshold: float = 0.5
) -> tuple[np.ndarray, int]:
    """A copy of the RGB ``image`` with every detection scoring at least ``threshold`` drawn; also the count drawn.

    ``detections`` are ``[class_id, score, xmin, ymin, xmax, ymax]`` rows, coordinates normalized.
    """
    import cv2

    out = image.copy()
    height, width = out.shape[:2]
    thickness = max(1, round(min(width, height) / 250))
    drawn = 0
    for cls, score, xmin, ymin, xmax, ymax in detections:
        if score < threshold:
            continue
        color = _PALETTE[int(cls) % len(_PALETTE)]
        x1, y1 = round(xmin * (width - 1)), round(ymin * (height - 1))
        x2, y2 = round(xmax * (width - 1)), round(ymax * (height - 1))
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        label = f"{classes.get(int(cls), str(int(cls)))} {score:.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        top = y1 - text_h - baseline if y1 >= text_h + baseline else y1
        cv2.rectangle(out, (x1, top), (x1 + text_w, top + text_h + baseline), color, cv2.FILLED)
        cv2.putText(out, label, (x1, top + text_h), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        drawn += 1
    return out, drawn


def save_drawing(
    image_bytes: bytes,
    detections: Sequence[Sequence[float]],
    out_uri: str,
    classes: dict[int, str] | None = None,
    threshold: float = 0.5,
) -> dict:
    """Draw ``detections`` on the encoded image and write it to ``out_uri`` (PNG or JPEG by extension, atomic).

    Returns ``{"path": <normalized URI>, "drawn": <boxes drawn>}``.
    """
    import cv2

    from include.model_artifact import decode_image

    extension = os.path.splitext(out_uri)[1].lower()
    if extension not in (".png", ".jpg", ".jpeg"):
        raise ValueError(f"{out_uri}: the drawing is written as .png or .jpg, not {extension or '(no extension)'}")
    drawing, drawn = draw_detections(decode_image(image_bytes), detections, classes or {}, threshold)
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(drawing, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"{out_uri}: OpenCV could not encode the drawing as {extension}")
    return {"path": storage.write_bytes(out_uri, encoded.tobytes()), "drawn": drawn}
