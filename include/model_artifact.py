"""The trained model artifact: ``model.tar.gz`` in the SageMaker object-detection layout.

The archive holds ``model_algo_1-symbol.json`` and ``model_algo_1-0000.params`` (an exported,
hybridized GluonCV SSD whose single input is ``data``, NCHW float32, and whose outputs are
class ids, scores and boxes in input pixels), ``hyperparams.json`` (the job's hyperparameters,
strings as SageMaker passes them) and ``classes.json`` (``{"0": "name", ...}``).

The local trainer writes it with :func:`export_model`; evaluation and the local endpoint read
it with :func:`load_detector`, so the three agree on preprocessing by construction.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include import storage
from include.run_layout import CLASSES_FILE

if TYPE_CHECKING:
    import numpy as np

PREFIX = "model_algo_1"
SYMBOL_FILE = f"{PREFIX}-symbol.json"
PARAMS_FILE = f"{PREFIX}-0000.params"
HYPERPARAMS_FILE = "hyperparams.json"
ARCHIVE_MEMBERS = (SYMBOL_FILE, PARAMS_FILE, HYPERPARAMS_FILE, CLASSES_FILE)



def preprocess(images: list[np.ndarray], size: int) -> Any:
    """Resize RGB uint8 images to ``size`` x ``size`` and normalize them into one NCHW batch (mx.nd)."""
    import mxnet as mx

    return mx.nd.array(preprocess_array(images, size))


def preprocess_array(images: list[np.ndarray], size: int) -> np.ndarray:
    """:func:`preprocess` as a NumPy array (for data-loader workers, which should not create NDArrays).

    The one implementation is :func:`include.ssd_numpy.preprocess`, which the ONNX export ships, so
    the MXNet model, the ONNX Runtime endpoint and an exported model's users normalize alike.
    """
    from include.ssd_numpy import preprocess as normalize

    return normalize(images, size)


def decode_image(data: bytes) -> np.ndarray:
    """Decode JPEG/PNG bytes to an RGB uint8 array; ``ValueError`` when they are not an image."""
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("the request body is not a decodable JPEG or PNG image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def export_model(
    net: Any,
    hyperparameters: dict[str, str],
    classes: dict[int, str],
    output_tar_uri: str,
) -> str:
    """Export a hybridized GluonCV SSD and its metadata to ``output_tar_uri`` (atomic).

    ``net`` must be hybridized and already run once in inference mode (outside autograd
    recording, after ``set_nms``), so that the cached graph is the inference graph.
    """
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        net.export(str(folder / PREFIX), epoch=0)
        (folder / HYPERPARAMS_FILE).write_text(json.dumps(hyperparameters, indent=2, sort_keys=True))
        (folder / CLASSES_FILE).write_text(json.dumps({str(k): v for k, v in sorted(classes.items())}, indent=2))
        with storage.atomic_local_path(output_tar_uri, suffix=".tar.gz") as tmp_tar:
            with tarfile.open(tmp_tar, "w:gz") as tar:
                for name in ARCHIVE_MEMBERS:
                    tar.add(folder / name, arcname=name)
    return storage.normalize(output_tar_uri)


def unpack(artifact_uri: str, target: Path, members: tuple[str, ...] = ARCHIVE_MEMBERS) -> Path:
    """Extract ``model.tar.gz`` (or copy a folder holding its members) into ``target``.

    ``members`` are the files needed (the built-in algorithm's archive has no ``classes.json``).
    """
    target.mkdir(parents=True, exist_ok=True)
    if storage.isdir(artifact_uri):
        for name in members:
            (target / name).write_bytes(storage.read_bytes(storage.join(artifact_uri, name)))
        return target
    with storage.local_copy(artifact_uri) as local, tarfile.open(local, "r:gz") as tar:
        names = set(tar.getnames())
        missing = [n for n in members if n not in names]
        if missing:
            raise ValueError(f"{artifact_uri} is not a model artifact: missing {', '.join(missing)}")
        tar.extractall(target, members=[tar.getmember(n) for n in members], filter="data")
    return target


@dataclass
class Detector:
    """An SSD loaded from a model artifact, answering normalized detections."""

    net: Any
    image_shape: int
    classes: dict[int, str]
    hyperparameters: dict[str, str] = field(default_factory=dict)

    def predict_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Detections per image: arrays of ``[class_id, score, xmin, ymin, xmax, ymax]``, normalized, best first."""
        import numpy as np

        if not images:
            return []
        ids, scores, boxes = self.net(preprocess(images, self.image_shape))
        ids, scores, boxes = ids.asnumpy(), scores.asnumpy(), boxes.asnumpy()
        out = []
        for i in range(len(images)):
            keep = ids[i, :, 0] >= 0
            det = np.concatenate(
                [ids[i, keep], scores[i, keep], np.clip(boxes[i, keep] / self.image_shape, 0.0, 1.0)], axis=1
            ).astype(np.float64)
            out.append(det[np.argsort(-det[:, 1], kind="stable")] if len(det) else det.reshape(0, 6))
        return out

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Detections of one RGB uint8 image (see :meth:`predict_batch`)."""
        return self.predict_batch([image])[0]


def load_detector(artifact_uri: str) -> Detector:
    """Load ``model.tar.gz`` (or a folder with its members) from any storage URI, on the CPU."""
    import warnings

    import mxnet as mx

    with tempfile.TemporaryDirectory() as tmp:
        folder = unpack(artifact_uri, Path(tmp))
        hyper = json.loads((folder / HYPERPARAMS_FILE).read_text())
        classes = {int(k): v for k, v in json.loads((folder / CLASSES_FILE).read_text()).items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = mx.gluon.SymbolBlock.imports(str(folder / SYMBOL_FILE), ["data"], str(folder / PARAMS_FILE))
    net.hybridize(static_alloc=True, static_shape=True)
    return Detector(net=net, image_shape=int(hyper.get("image_shape", 300)), classes=classes, hyperparameters=hyper)
