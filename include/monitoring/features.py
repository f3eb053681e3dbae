"""What monitoring measures: per image, its input features (size, brightness, contrast, JPEG quality) and the
features of the model's answer (detections, classes, scores); gathered into columns, one list per feature.

Image features are read cheaply with Pillow: the size and the JPEG quantization tables from the header, the
brightness (mean luma, ITU-R 601) and RMS contrast (its standard deviation) from a 1/8-scale DCT-domain decode
(``Image.draft``: about 3x faster than a full decode, brightness equal and contrast within 1 on 0..255).
No library estimates JPEG quality from the tables, hence :func:`jpeg_quality`: the IJG quality whose scaled
standard luminance table is nearest table 0 (libjpeg's integer scaling; exact on re-encoded files).

Prediction features follow the endpoint's answer, ``[class_id, score, xmin, ymin, xmax, ymax]`` rows with
normalized corners, at a score threshold: per image the detections kept, the share with none and the top
score; per detection its class (by name), score and relative box area.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Feature names, the Model Monitor ``inferred_type`` of each and whether it is measured per image or per detection.
NUMERIC, INTEGRAL, STRING = "Fractional", "Integral", "String"
INPUT_FEATURES: dict[str, str] = {
    "input.width": INTEGRAL,
    "input.height": INTEGRAL,
    "input.aspect_ratio": NUMERIC,
    "input.file_kb": NUMERIC,
    "input.format": STRING,
    "input.jpeg_quality": INTEGRAL,
    "input.brightness": NUMERIC,
    "input.contrast": NUMERIC,
}
PREDICTION_FEATURES: dict[str, str] = {
    "prediction.boxes_per_image": INTEGRAL,
    "prediction.no_detection": STRING,
    "prediction.max_score": NUMERIC,
    "prediction.class": STRING,
    "prediction.score": NUMERIC,
    "prediction.box_area": NUMERIC,
}
FEATURES: dict[str, str] = {**INPUT_FEATURES, **PREDICTION_FEATURES}
#: Features with one value per detection rather than per image.
PER_DETECTION = ("prediction.class", "prediction.score", "prediction.box_area")

#: The IJG standard luminance quantization table (JPEG Annex K), natural (row-major) order.
_STD_LUMA = np.array(
    [
        16,
        11,
        10,
        16,
        24,
        40,
        51,
        61,
        12,
        12,
        14,
        19,
        26,
        58,
        60,
        55,
        14,
        13,
        16,
        24,
        40,
        57,
        69,
        56,
        14,
        17,
        22,
        29,
        51,
        87,
        80,
        62,
        18,
        22,
        37,
        56,
        68,
        109,
        103,
        77,
        24,
        35,
        55,
        64,
        81,
        104,
        113,
        92,
        49,
        64,
        78,
        87,
        103,
        121,
        120,
        101,
        72,
        92,
        95,
        98,
        112,
        100,
        103,
        99,
    ],
    dtype=np.int64,
)


def _ijg_tables() -> np.ndarray:
    """Table 0 of every IJG quality 1..100 (row q-1), scaled as libjpeg's ``jpeg_quality_scaling`` does."""
    qualities = np.arange(1, 101)
    scale = np.where(qualities < 50, 5000 // qualities, 200 - 2 * qualities)
    return np.clip((_STD_LUMA[None, :] * scale[:, None] + 50) // 100, 1, 255)


_TABLES = _ijg_tables()


def jpeg_quality(luma_table: Sequence[int]) -> tuple[int, int]:
    """``(quality, distance)``: the IJG quality 1..100 whose luminance table is nearest ``luma_table`` (natural
    order) and the L1 distance left (0 for libjpeg's own tables; large for cameras' custom ones)."""
    distances = np.abs(_TABLES - np.asarray(luma_table, dtype=np.int64)[None, :]).sum(axis=1)
    best = int(np.argmin(distances))
    return best + 1, int(distances[best])


def image_features(data: bytes) -> dict[str, Any]:
    """The input features of one encoded image; ``ValueError`` when the bytes are not an image Pillow reads."""
    from PIL import Image, ImageStat, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        width, height, kind = image.width, image.height, (image.format or "unknown").lower()
        tables = getattr(image, "quantization", None)
        quality = jpeg_quality(tables[0])[0] if kind == "jpeg" and tables and 0 in tables else None
        if kind == "jpeg":
            image.draft("L", (max(1, width // 8), max(1, height // 8)))
        else:
            image.thumbnail((max(1, width // 8), max(1, height // 8)))
        stat = ImageStat.Stat(image.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"not a readable image ({exc})") from None
    return {
        "input.width": width,
        "input.height": height,
        "input.aspect_ratio": width / height if height else None,
        "input.file_kb": len(data) / 1024,
        "input.format": kind,
        "input.jpeg_quality": quality,
        "input.brightness": float(stat.mean[0]),
        "input.contrast": float(stat.stddev[0]),
    }


def prediction_features(
    rows: Iterable[Sequence[float]], classes: Mapping[int, str], score_threshold: float
) -> dict[str, Any]:
    """The prediction features of one answer (per-detection features as lists); unknown class ids keep their id."""
    kept = [row for row in rows if float(row[1]) >= score_threshold]
    scores = [float(row[1]) for row in kept]
    return {
        "prediction.boxes_per_image": len(kept),
        "prediction.no_detection": "true" if not kept else "false",
        "prediction.max_score": max(scores) if scores else None,
        "prediction.class": [classes.get(int(row[0]), str(int(row[0]))) for row in kept],
        "prediction.score": scores,
        "prediction.box_area": [
            max(0.0, float(r[4]) - float(r[2])) * max(0.0, float(r[5]) - float(r[3])) for r in kept
        ],
    }


@dataclass
class FeatureColumns:
    """Every feature's values over a set of images (``None``: missing), and the images that could not be read."""

    images: int = 0
    columns: dict[str, list[Any]] = field(default_factory=lambda: {name: [] for name in FEATURES})
    errors: list[str] = field(default_factory=list)

    def add(self, features: Mapping[str, Any]) -> None:
        """One image's features (input, prediction or both); per-detection lists are spread out."""
        self.images += 1
        for name, value in features.items():
            if name in PER_DETECTION:
                self.columns[name].extend(value)
            else:
                self.columns[name].append(value)

    def present(self, prefix: str) -> bool:
        """Whether any feature of ``input.`` or ``prediction.`` was measured."""
        return any(values for name, values in self.columns.items() if name.startswith(prefix))
