"""The ImageNet weights cache: look-up order, downloads from a model store (a local HTTP server), imports and checks."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from include.cli import main
from include.training import pretrained
from include.training.pretrained import WeightsError, WeightsUnavailable, file_name
from tests.support.pretrained_weights import SHARED_MOBILENET, SHARED_MOBILENET_SHA256, random_weights

MOBILENET = "mobilenet-1.0"


def _sha(path: Path, algorithm: str = "sha256") -> str:
    return hashlib.new(algorithm, path.read_bytes()).hexdigest()


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@contextlib.contextmanager
def _model_store(folder: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 (free port) serving ``folder``; yields its URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _publish(store: Path, weights: Path) -> None:
    """Lay ``weights`` out as GluonCV's model store does: ``gluon/models/<file>.zip`` holding ``<file>``."""
    (store / "gluon" / "models").mkdir(parents=True)
    with zipfile.ZipFile(store / "gluon" / "models" / f"{file_name(MOBILENET)}.zip", "w") as zipped:
        zipped.write(weights, file_name(MOBILENET))


@pytest.fixture
def published_sha1(random_mobilenet: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """GluonCV's table made to publish the random file's SHA-1 (the real file cannot be fetched offline)."""
    from gluoncv.model_zoo import model_store

    sha1 = _sha(random_mobilenet, "sha1")
    monkeypatch.setitem(model_store._model_sha1, "mobilenet1.0", sha1)
    return sha1


def test_the_model_store_names_match_gluoncv() -> None:
    from gluoncv.model_zoo.model_store import short_hash

    for network, store in (("mobilenet-1.0", "mobilenet1.0"), ("resnet-50", "resnet50_v1"), ("vgg-16", "vgg16_atrous")):
        assert file_name(network) == f"{store}-{short_hash(store)}.params"


def test_cache_is_searched_in_order_and_only_read(random_mobilenet: Path, tmp_path: Path, monkeypatch) -> None:
    first, mxnet_home = tmp_path / "first", tmp_path / "mxnet"
    monkeypatch.setenv("MXNET_HOME", str(mxnet_home))
    monkeypatch.setenv("DETECTION_PRETRAINED_DIR", str(first))
    assert pretrained.search_dirs() == [first, mxnet_home / "models"]
    assert pretrained.find(MOBILENET) is None
    (mxnet_home / "models").mkdir(parents=True)
    (mxnet_home / "models" / file_name(MOBILENET)).write_bytes(random_mobilenet.read_bytes())
    found = pretrained.find(MOBILENET)
    assert found is not None and found.path.parent == mxnet_home / "models" and found.source == "cache"
    assert found.sha256 == _sha(random_mobilenet) and not found.gluoncv_sha1
    first.mkdir()
    (first / file_name(MOBILENET)).write_bytes(random_mobilenet.read_bytes())
    before = _listing(tmp_path)
    assert pretrained.resolve(MOBILENET).path == first / file_name(MOBILENET)
    assert _listing(tmp_path) == before  # no lock, no sidecar, nothing written


def test_offline_without_weights_names_the_file_the_folders_and_the_import_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DETECTION_PRETRAINED_DIR", str(tmp_path / "cache"))
    with pytest.raises(WeightsUnavailable) as refused:
        pretrained.resolve(MOBILENET)
    message = str(refused.value)
    assert "mobilenet1.0-efbb2ca3.params" in message and str(tmp_path / "cache") in message
    assert "DETECTION_PRETRAINED_DOWNLOAD=0" in message
    assert "detection-pipeline weights import FILE --base-network mobilenet-1.0" in message
    with socket.socket() as closed:  # a port nothing listens on: the download is refused at once
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("MXNET_GLUON_REPO", f"http://127.0.0.1:{closed.getsockname()[1]}/")
        with pytest.raises(WeightsUnavailable, match=r"downloading http://127\.0\.0\.1:\d+/gluon/models/mobilenet1\.0-"):
            pretrained.resolve(MOBILENET, allow_download=True)
    assert _listing(tmp_path / "cache") == []


def test_download_checks_gluoncvs_sha1_and_renames_into_the_cache(
    random_mobilenet: Path, published_sha1: str, tmp_path: Path, monkeypatch
) -> None:
    _publish(tmp_path / "store", random_mobilenet)
    cache = tmp_path / "cache"
    monkeypatch.setenv("DETECTION_PRETRAINED_DIR", str(cache))
    with _model_store(tmp_path / "store") as url:
        monkeypatch.setenv("MXNET_GLUON_REPO", url)
        weights = pretrained.resolve(MOBILENET, allow_download=True)
    assert weights.path == cache / file_name(MOBILENET) and weights.source == "download" and weights.gluoncv_sha1
    assert weights.sha256 == _sha(random_mobilenet)
    assert _listing(cache) == [file_name(MOBILENET), f"{file_name(MOBILENET)}.json"]  # no temporaries left
    sidecar = json.loads((cache / f"{file_name(MOBILENET)}.json").read_text())
    assert sidecar["url"] == f"{url}gluon/models/{file_name(MOBILENET)}.zip" and sidecar["sha256"] == weights.sha256
    assert pretrained.find(MOBILENET) == weights  # later look-ups find it, with its origin


def test_a_download_that_is_not_the_published_file_leaves_nothing(
    random_mobilenet: Path, published_sha1: str, tmp_path: Path, monkeypatch
) -> None:
    other = random_weights(MOBILENET, tmp_path / "other.params", value=0.5)
    _publish(tmp_path / "store", other)
    cache = tmp_path / "cache"
    cache.mkdir()
    with _model_store(tmp_path / "store") as url:
        monkeypatch.setenv("MXNET_GLUON_REPO", url)
        with pytest.raises(WeightsError, match=f"SHA-1 {_sha(other, 'sha1')}, GluonCV's model store publishes"):
            pretrained.download(MOBILENET, cache)
    assert _listing(cache) == []


def test_import_copies_a_fitting_file_with_its_record(random_mobilenet: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("DETECTION_PRETRAINED_DIR", str(cache))
    weights = pretrained.import_weights(random_mobilenet, MOBILENET)
    assert weights.path == cache / file_name(MOBILENET) and weights.source == "import"
    assert weights.sha256 == _sha(random_mobilenet)  # byte for byte
    sidecar = json.loads((cache / f"{file_name(MOBILENET)}.json").read_text())
    assert sidecar["source_file"] == str(random_mobilenet) and sidecar["layers"] == 137
    assert pretrained.find(MOBILENET) == weights
    weights.path.write_bytes(weights.path.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(WeightsError, match="changed after it was put into the cache"):
        pretrained.find(MOBILENET)


def _save(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    mx.nd.save(str(path), {k: mx.nd.array(v) for k, v in arrays.items()})
    return path


def _arrays(path: Path) -> dict[str, np.ndarray]:
    return {k: v.asnumpy() for k, v in mx.nd.load(str(path)).items()}


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("truncated", r"is not an MXNet parameter file \(truncated or corrupt\): Check failed"),
        ("resnet", r"does not fit resnet50_v1 .*lacks layer features\.4\.0\.body\.0\.weight .*mobilenet1\.0's"),
        ("depthwise", r"layer features\.3\.weight has shape \(32, 3, 3, 3\), mobilenet1\.0 needs \(32, 1, 3, 3\)"),
        ("stranger", r"layer features\.99\.weight is not part of it"),
        ("nan", r"layer features\.1\.gamma holds NaN or infinite values"),
        ("variance", r"layer features\.1\.running_var holds a non-positive variance"),
    ],
)
def test_import_refuses_a_file_that_does_not_fit_and_writes_nothing(
    case: str, message: str, random_mobilenet: Path, tmp_path: Path
) -> None:
    arrays = _arrays(random_mobilenet)
    network = MOBILENET
    if case == "truncated":
        bad = tmp_path / "bad.params"
        bad.write_bytes(random_mobilenet.read_bytes()[: 5 << 20])
    elif case == "resnet":
        bad, network = random_mobilenet, "resnet-50"
    else:
        if case == "depthwise":  # Gluon's own loader accepts this one: the dimension is open until the first forward
            arrays["features.3.weight"] = np.zeros((32, 3, 3, 3), np.float32)
        elif case == "stranger":
            arrays["features.99.weight"] = np.zeros((1,), np.float32)
        elif case == "nan":
            arrays["features.1.gamma"][0] = np.nan
        else:
            arrays["features.1.running_var"][3] = 0.0
        bad = _save(tmp_path / "bad.params", arrays)
    cache = tmp_path / "cache"
    with pytest.raises(WeightsError, match=message) as refused:
        pretrained.import_weights(bad, network, cache)
    assert str(bad) in str(refused.value)
    assert _listing(cache) == []


def test_import_takes_an_exported_models_names_and_a_file_without_classifier(random_mobilenet: Path, tmp_path) -> None:
    arrays = {f"arg:{k}": v for k, v in _arrays(random_mobilenet).items() if not k.startswith("output.")}
    weights = pretrained.import_weights(_save(tmp_path / "exported.params", arrays), MOBILENET, tmp_path / "cache")
    assert set(mx.nd.load(str(weights.path))) == {k.removeprefix("arg:") for k in arrays}
    assert weights.sha256 == _sha(weights.path) != _sha(tmp_path / "exported.params")


@pytest.mark.skipif(not SHARED_MOBILENET.is_file(), reason="../shared/models is not there")
def test_the_shared_imagenet_file_imports(tmp_path: Path, capsys) -> None:
    assert main(["--json", "weights", "import", str(SHARED_MOBILENET), "--cache", str(tmp_path / "cache")]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["sha256"] == SHARED_MOBILENET_SHA256 and record["source"] == "import"
    assert record["gluoncv_sha1_verified"] is False  # a TF-slim conversion, not GluonCV's own download


def test_cli_lists_the_cache_and_refuses_with_the_layer(random_mobilenet: Path, tmp_path: Path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DETECTION_PRETRAINED_DIR", str(cache))
    assert main(["weights", "import", str(random_mobilenet), "--base-network", "vgg-16"]) == 1
    assert "does not fit vgg16_atrous" in capsys.readouterr().err and _listing(cache) == []
    assert main(["weights", "import", str(random_mobilenet)]) == 0
    capsys.readouterr()
    assert main(["--json", "weights", "list"]) == 0
    out, err = capsys.readouterr()
    listing = json.loads(out)
    assert f"mobilenet-1.0: {cache / 'mobilenet1.0-efbb2ca3.params'} (sha256 " in err
    assert listing["searched"][0] == str(cache) and listing["mobilenet-1.0"]["source"] == "import"
    assert listing["resnet-50"] == "not cached (resnet50_v1-cc729d95.params)"


def test_cli_fetch_downloads_into_the_cache_and_fails_clearly_offline(
    random_mobilenet: Path, published_sha1: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    _publish(tmp_path / "store", random_mobilenet)
    with _model_store(tmp_path / "store") as url:
        monkeypatch.setenv("MXNET_GLUON_REPO", url)
        assert main(["--json", "weights", "fetch", "--cache", str(tmp_path / "cache")]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == "download"
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("MXNET_GLUON_REPO", f"http://127.0.0.1:{closed.getsockname()[1]}")
        assert main(["weights", "fetch", "--cache", str(tmp_path / "other")]) == 1
    assert "detection-pipeline weights: downloading http://127.0.0.1:" in capsys.readouterr().err
    assert _listing(tmp_path / "other") == []
