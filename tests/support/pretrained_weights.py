"""ImageNet-style weights files for the tests: random ones of the right layout, and the shared real one.

The root conftest points MXNet's cache at an empty folder and turns downloading off, so a test
has weights only when it puts some in a cache of its own (:func:`weights_cache`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.shared_data import SHARED

SHARED_MOBILENET = SHARED / "models" / "mobilenet1.0-imagenet" / "mobilenet1.0-efbb2ca3.params"
SHARED_MOBILENET_SHA256 = "1acbb0f7a7cfe1ceb55a891bd93adb7d8477eb1111b943e435d80860ab81d6d8"


def random_weights(base_network: str, path: Path, value: float | None = None) -> Path:
    """A GluonCV model-zoo file of ``base_network``'s ImageNet model with random (or all ``value``) values."""
    import mxnet as mx

    from include.training.ssd_network import classifier, layout

    spec = layout(base_network, 300)
    net = classifier(spec, frozen_statistics=False)
    net.initialize(mx.init.Xavier())
    size = spec.reference_size if spec.vgg_extractor else 64
    net(mx.nd.zeros((1, 3, size, size)))
    if value is not None:
        for param in net.collect_params().values():
            param.set_data(mx.nd.full(param.shape, value))
    path.parent.mkdir(parents=True, exist_ok=True)
    net.save_parameters(str(path))
    if spec.vgg_extractor:  # GluonCV's ImageNet VGG file has the stages only, not the SSD's extra layers
        arrays = mx.nd.load(str(path))
        mx.nd.save(str(path), {k: v for k, v in arrays.items() if not k.startswith(spec.optional_layers)})
    return path


@pytest.fixture(scope="session")
def random_mobilenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random ``mobilenet1.0`` weights file (GluonCV layout), outside any cache."""
    return random_weights("mobilenet-1.0", tmp_path_factory.mktemp("random-weights") / "mobilenet.params")


@pytest.fixture
def weights_cache(random_mobilenet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``$DETECTION_PRETRAINED_DIR`` holding :func:`random_mobilenet` under the model store's file name."""
    from include.training.pretrained import file_name

    cache = tmp_path / "weights-cache"
    cache.mkdir()
    (cache / file_name("mobilenet-1.0")).write_bytes(random_mobilenet.read_bytes())
    monkeypatch.setenv("DETECTION_PRETRAINED_DIR", str(cache))
    yield cache
