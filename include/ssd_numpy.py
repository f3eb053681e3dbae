"""The SSD detector's NumPy side: input preprocessing, GluonCV's per-class decoding and NMS, an ONNX Runtime runner.

Self-contained on purpose: this module imports NumPy and the standard library only (onnxruntime when a
model is loaded, OpenCV for resizing when it is installed), because the ONNX export ships this very
file beside ``model.onnx`` for users who have nothing but ``onnxruntime`` and ``numpy``::

    from ssd_numpy import OnnxSsd
    detector = OnnxSsd("model.onnx")
    rows = detector.predict(rgb_uint8_image)   # [[class_id, score, xmin, ymin, xmax, ymax], ...] normalized

The pipeline uses it too, so both runtimes agree by construction: :mod:`include.model_artifact`
preprocesses MXNet's input with :func:`preprocess`, and the ONNX Runtime endpoint serves :class:`OnnxSsd`.

Why the non-maximum suppression is here and not in the ONNX graph: mxnet.onnx translates GluonCV's
``box_nms`` into ONNX ``NonMaxSuppression``, which suppresses boxes across classes (the exporter warns
so) and gave other detections than MXNet on 5 of 5 images; GluonCV suppresses within each class. The
exported graph therefore ends at the class probabilities and the decoded boxes, and :func:`postprocess`
does what the tail of GluonCV's SSD does, the way MXNet's CPU kernels do it (one candidate per anchor
and foreground class above 0.01, a stable sort by score, the top ``nms_topk`` only, IoU in float32,
``post_nms`` kept): identical class ids and order on 20 of 20 test images, scores within 1.1e-6.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

#: ImageNet statistics the SSD base networks expect (RGB, 0..1 scale); the input is (pixel - 255 mean) / (255 std).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

#: Names of the exported graph's input and outputs.
INPUT = "data"
CLASS_PROBS = "class_probs"
BOXES = "boxes"


@dataclass(frozen=True)
class Settings:
    """What a model needs around its graph: input size, normalisation, classes, the decoder's and NMS's settings."""

    image_shape: int
    classes: dict[int, str]
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD
    #: A class's probability must exceed this to become a candidate (GluonCV's MultiPerClassDecoder).
    score_threshold: float = 0.01
    #: IoU above which a lower-scored box of the same class is suppressed; 0 switches NMS off.
    nms_threshold: float = 0.45
    #: Candidates that take part in NMS (best first); -1 for all.
    nms_topk: int = 400
    #: Detections kept after NMS; 0 for all.
    post_nms: int = 100
    #: Suppress overlapping boxes of different classes too (GluonCV's SSD does not).
    force_suppress: bool = False
    notes: dict[str, str] = field(default_factory=dict, compare=False)

    def metadata(self) -> dict[str, str]:
        """The settings as ONNX ``metadata_props`` (string values), readable by :meth:`from_metadata`."""
        return {
            "classes": json.dumps({str(k): v for k, v in sorted(self.classes.items())}),
            "image_shape": str(self.image_shape),
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "postprocess": json.dumps(
                {
                    "score_threshold": self.score_threshold,
                    "nms_threshold": self.nms_threshold,
                    "nms_topk": self.nms_topk,
                    "post_nms": self.post_nms,
                    "force_suppress": self.force_suppress,
                }
            ),
            **self.notes,
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> Settings:
        """Settings from an ONNX model's ``metadata_props``; ``ValueError`` naming a missing or bad key."""
        try:
            post = json.loads(metadata["postprocess"])
            return cls(
                image_shape=int(metadata["image_shape"]),
                classes={int(k): str(v) for k, v in json.loads(metadata["classes"]).items()},
                mean=tuple(float(v) for v in json.loads(metadata["mean"])),
                std=tuple(float(v) for v in json.loads(metadata["std"])),
                score_threshold=float(post["score_threshold"]),
                nms_threshold=float(post["nms_threshold"]),
                nms_topk=int(post["nms_topk"]),
                post_nms=int(post["post_nms"]),
                force_suppress=bool(post.get("force_suppress", False)),
            )
        except KeyError as exc:
            raise ValueError(f"the model's metadata has no {exc.args[0]!r}: not an export of this pipeline") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"the model's metadata is not readable: {exc}") from None


# --- input ----------------------------------------------------------------------------------


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` (H x W x C uint8) resized to ``size`` x ``size`` by bilinear interpolation, in NumPy.

    Pixel centres as OpenCV's ``INTER_LINEAR`` places them; OpenCV rounds its weights to 11 bits, so
    results may differ from it by one intensity level. :func:`preprocess` uses OpenCV when it is installed.
    """

    def taps(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = (np.arange(size, dtype=np.float64) + 0.5) * (n_in / size) - 0.5
        low = np.floor(position)
        weight = np.where(position < 0, 0.0, position - low).astype(np.float32)
        low = low.astype(np.int64)
        return np.clip(low, 0, n_in - 1), np.clip(low + 1, 0, n_in - 1), weight

    y0, y1, wy = taps(image.shape[0])
    x0, x1, wx = taps(image.shape[1])
    pixels = image.astype(np.float32)
    rows = pixels[y0] * (1 - wy)[:, None, None] + pixels[y1] * wy[:, None, None]
    out = rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    try:
        import cv2
    except ImportError:
        return resize_bilinear(image, size)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


def preprocess(
    images: Sequence[np.ndarray], size: int, mean: Sequence[float] = MEAN, std: Sequence[float] = STD
) -> np.ndarray:
    """RGB uint8 images resized to ``size`` x ``size`` and normalized into one NCHW float32 batch."""
    batch = np.empty((len(images), 3, size, size), dtype=np.float32)
    mean_px = np.array(mean, dtype=np.float32) * 255.0
    std_px = np.array(std, dtype=np.float32) * 255.0
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image {i}: expected an H x W x 3 RGB array, got shape {image.shape}")
        resized = _resize(image, size).astype(np.float32)
        batch[i] = ((resized - mean_px) / std_px).transpose(2, 0, 1)
    return batch


# --- output ---------------------------------------------------------------------------------


def decode_candidates(probs: np.ndarray, boxes: np.ndarray, threshold: float) -> np.ndarray:
    """GluonCV's MultiPerClassDecoder + concatenation: ``[B, C*N, 6]`` rows of ``[class, score, x1, y1, x2, y2]``.

    One row per anchor and foreground class, class-major; a probability not above ``threshold``
    gives class -1 and score 0. ``probs`` is ``[B, N, C+1]`` (background first), ``boxes`` ``[B, N, 4]``.
    """
    foreground = probs[..., 1:]
    passed = foreground > np.float32(threshold)
    class_ids = np.broadcast_to(np.arange(foreground.shape[-1], dtype=np.float32), foreground.shape)
    ids = np.where(passed, class_ids, np.float32(-1))
    scores = np.where(passed, foreground, np.float32(0))
    per_class = [
        np.concatenate([ids[..., c : c + 1], scores[..., c : c + 1], boxes], axis=-1) for c in range(ids.shape[-1])
    ]
    return np.concatenate(per_class, axis=1).astype(np.float32)


def box_nms(
    rows: np.ndarray,
    overlap_threshold: float,
    valid_threshold: float = 0.01,
    topk: int = -1,
    force_suppress: bool = False,
) -> np.ndarray:
    """MXNet's ``contrib.box_nms`` on CPU for ``[B, M, 6]`` rows of ``[class, score, corners]``.

    Rows scoring above ``valid_threshold`` (class not -1) are sorted by score, stably, and the first
    ``topk`` take part; a row is suppressed when a better kept row of the same class (any class with
    ``force_suppress``) overlaps it by IoU above ``overlap_threshold``. The kept rows come first, in
    score order; every other row is -1. One IoU matrix per image instead of MXNet's loop: 7-9 ms for 400.
    """
    out = np.full_like(rows, -1)
    for b, image_rows in enumerate(rows):
        valid = (image_rows[:, 1] > np.float32(valid_threshold)) & (image_rows[:, 0] != -1)
        order = np.nonzero(valid)[0]
        order = order[np.argsort(-image_rows[order, 1], kind="stable")]
        if topk >= 0:
            order = order[:topk]
        corners = image_rows[order, 2:6]
        width, height = corners[:, 2] - corners[:, 0], corners[:, 3] - corners[:, 1]
        area = np.where((width < 0) | (height < 0), np.float32(0), width * height).astype(np.float32)
        low = np.maximum(corners[:, None, :2], corners[None, :, :2])
        high = np.minimum(corners[:, None, 2:], corners[None, :, 2:])
        inter = np.prod(np.maximum(high - low, 0), axis=-1, dtype=np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            suppresses = inter / (area[:, None] + area[None, :] - inter) > np.float32(overlap_threshold)
        if not force_suppress:
            classes = image_rows[order, 0]
            suppresses &= classes[:, None] == classes[None, :]
        suppresses = np.triu(suppresses, k=1)
        keep = np.ones(len(order), dtype=bool)
        for r in range(len(order)):
            if keep[r]:
                keep &= ~suppresses[r]
        kept = image_rows[order[keep]]
        out[b, : len(kept)] = kept
    return out


def postprocess(probs: np.ndarray, boxes: np.ndarray, settings: Settings) -> list[np.ndarray]:
    """Detections per image from the graph's outputs: ``[class_id, score, xmin, ymin, xmax, ymax]`` rows.

    Coordinates are normalized to 0..1 (``boxes`` are in input pixels), rows best first, float64:
    what the MXNet model's own outputs give after the same filtering (class -1 rows dropped).
    """
    rows = decode_candidates(probs, boxes, settings.score_threshold)
    if 0 < settings.nms_threshold < 1:
        rows = box_nms(
            rows, settings.nms_threshold, settings.score_threshold, settings.nms_topk, settings.force_suppress
        )
        if settings.post_nms > 0:
            rows = rows[:, : settings.post_nms]
    size = settings.image_shape
    detections = []
    for image_rows in rows:
        kept = image_rows[image_rows[:, 0] >= 0]
        found = np.concatenate([kept[:, :2], np.clip(kept[:, 2:6] / size, 0.0, 1.0)], axis=1).astype(np.float64)
        detections.append(found[np.argsort(-found[:, 1], kind="stable")])
    return detections


# --- the runner ----------------------------------------------------------------------------


class OnnxSsd:
    """An exported SSD on ONNX Runtime (CPU): RGB uint8 images in, normalized detections out.

    ``model`` is the path of ``model.onnx`` or its bytes; ``threads`` caps ONNX Runtime's compute
    threads (default: one per physical core); ``spin=False`` makes idle compute threads sleep instead
    of spinning, which costs some latency on idle cores and saves the CPU time others need on shared
    ones. The settings come from the model's own metadata.
    """

    def __init__(self, model: str | os.PathLike[str] | bytes, threads: int | None = None, spin: bool = True) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initializers and the like are not the user's
        if threads:
            options.intra_op_num_threads = threads
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        source = model if isinstance(model, bytes) else os.fspath(model)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.settings = Settings.from_metadata(self.session.get_modelmeta().custom_metadata_map)

    @property
    def image_shape(self) -> int:
        return self.settings.image_shape

    @property
    def classes(self) -> dict[int, str]:
        return self.settings.classes

    def forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The graph on a preprocessed NCHW batch: class probabilities ``[B, N, C+1]`` and boxes ``[B, N, 4]``."""
        probs, boxes = self.session.run([CLASS_PROBS, BOXES], {INPUT: batch})
        return probs, boxes

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Detections per image (see :func:`postprocess`)."""
        if not len(images):
            return []
        s = self.settings
        return postprocess(*self.forward(preprocess(images, s.image_shape, s.mean, s.std)), s)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Detections of one RGB uint8 image."""
        return self.predict_batch([image])[0]
