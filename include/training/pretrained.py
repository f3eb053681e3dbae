"""ImageNet weights of the SSD base networks: the weights cache, downloads from GluonCV's model store, checks.

``use_pretrained_model=1`` needs the base network's ImageNet file, named as GluonCV's model store
names it (``mobilenet1.0-efbb2ca3.params``). :func:`resolve` looks for it in the weights cache,
``$DETECTION_PRETRAINED_DIR`` then MXNet's cache folder (``$MXNET_HOME/models``, ``~/.mxnet/models``),
and otherwise downloads it from the model store (``$MXNET_GLUON_REPO`` or Apache's), checks GluonCV's
SHA-1 of it and renames it into the cache; ``DETECTION_PRETRAINED_DOWNLOAD=0`` turns downloading
off. When neither works it raises :class:`WeightsUnavailable`, whose message names the file, the
folders searched, why the download failed and the import command. :func:`import_weights` (``detection-pipeline
weights import FILE``) puts a file of one's own into the cache after :func:`check_file` found that
it fits the base network layer by layer.

Why not GluonCV's own ``model_store.get_model_file``: it trusts only its SHA-1 table and downloads
again on a mismatch (so an imported or converted file is never used), writes a ``.lock`` file into
the cache folder (a read-only folder breaks it), extracts the download in place (a killed download
leaves a truncated file under the final name) and has no network timeout.

Every cache entry is identified by its sha256, recorded with the file's origin in a sidecar
``<file>.json`` (``source`` ``download`` or ``import``; a file without one, such as GluonCV's own
download, is ``cache``). :meth:`WeightsFile.record` is what ``training.json`` (``PretrainedWeights``),
the MLflow run and ``report.html`` show.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include import storage
from include.training.ssd_network import BaseLayout, classifier, layout

DIR_ENV = "DETECTION_PRETRAINED_DIR"
DOWNLOAD_ENV = "DETECTION_PRETRAINED_DOWNLOAD"  # "0": never download
REPO_ENV = "MXNET_GLUON_REPO"  # GluonCV's own setting for a mirror of its model store
DEFAULT_REPO = "https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/"
TIMEOUT_S = 30.0  # per network operation (connect, each read)
IMPORT_COMMAND = "detection-pipeline weights import FILE --base-network {base}"
_CHUNK = 1 << 20


class WeightsError(ValueError):
    """A weights file does not fit the base network (the message names the file and the layer)."""


class WeightsUnavailable(WeightsError):
    """The base network's ImageNet weights are not in the cache and could not be downloaded.

    ``summary``: one short line (file and why) for a tag or a report.
    """

    def __init__(self, message: str, summary: str = "") -> None:
        super().__init__(message)
        self.summary = summary or message


@dataclass(frozen=True)
class WeightsFile:
    """A base network's ImageNet weights in the cache, with where they came from."""

    base_network: str
    path: Path
    sha256: str
    source: str  # cache | download | import
    gluoncv_sha1: bool  # the file is byte-identical to GluonCV's model-store file

    def record(self) -> dict[str, Any]:
        """What training.json (``PretrainedWeights``), the MLflow run and the report show."""
        return {
            "file": str(self.path),
            "sha256": self.sha256,
            "source": self.source,
            "base_network": self.base_network,
            "model_store_name": store_name(self.base_network),
            "gluoncv_sha1_verified": self.gluoncv_sha1,
        }


def store_name(base_network: str) -> str:
    """GluonCV's model-store name of ``base_network``'s ImageNet weights (``mobilenet1.0``...)."""
    return layout(base_network, 512).store_name


def gluoncv_sha1(store: str) -> str:
    """The SHA-1 GluonCV's model store publishes for ``store`` (its table ships with gluoncv)."""
    from gluoncv.model_zoo.model_store import _model_sha1

    return _model_sha1[store]


def file_name(base_network: str) -> str:
    """``<store name>-<first 8 hex of its SHA-1>.params``: the model store's (and the cache's) file name."""
    store = store_name(base_network)
    return f"{store}-{gluoncv_sha1(store)[:8]}.params"


def search_dirs() -> list[Path]:
    """The cache folders, in order: ``$DETECTION_PRETRAINED_DIR``, then MXNet's (``$MXNET_HOME/models``)."""
    import mxnet as mx

    folders = [Path(os.environ[DIR_ENV]).expanduser()] if os.environ.get(DIR_ENV) else []
    return [*folders, Path(mx.base.data_dir()).expanduser() / "models"]


def _digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _entry(base_network: str, path: Path) -> WeightsFile:
    """The cache entry at ``path``; a sidecar whose sha256 disagrees with the file is an error."""
    sha256 = _digest(path, "sha256")
    meta: dict[str, Any] = {}
    if _sidecar(path).is_file():
        try:
            meta = json.loads(_sidecar(path).read_text())
        except json.JSONDecodeError as exc:
            raise WeightsError(f"{_sidecar(path)} line {exc.lineno}: not valid JSON ({exc.msg})") from None
        if meta.get("sha256") != sha256:
            raise WeightsError(
                f"{path} changed after it was put into the cache: sha256 {sha256}, {_sidecar(path).name} "
                f"recorded {meta.get('sha256')}; import the file again"
            )
    sha1 = _digest(path, "sha1") if "gluoncv_sha1" not in meta else None
    return WeightsFile(
        base_network,
        path,
        sha256,
        meta.get("source", "cache"),
        meta["gluoncv_sha1"] if sha1 is None else sha1 == gluoncv_sha1(store_name(base_network)),
    )


def find(base_network: str) -> WeightsFile | None:
    """The cached ImageNet weights of ``base_network`` (first folder of :func:`search_dirs` holding them).

    Only reads: nothing is written into the cache folders (they may be read-only).
    """
    for folder in search_dirs():
        path = folder / file_name(base_network)
        if path.is_file():
            return _entry(base_network, path)
    return None


def download_enabled() -> bool:
    return os.environ.get(DOWNLOAD_ENV, "1").strip() not in ("0", "false", "False", "no")


def download_url(base_network: str) -> str:
    """The model store's URL of the zipped weights (GluonCV's layout under ``$MXNET_GLUON_REPO``)."""
    repo = os.environ.get(REPO_ENV) or DEFAULT_REPO
    return f"{repo.rstrip('/')}/gluon/models/{file_name(base_network)}.zip"


def _writable_cache() -> Path:
    """The first cache folder this process can write to (created if need be)."""
    for folder in search_dirs():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    raise WeightsError(f"none of the weights cache folders {', '.join(map(str, search_dirs()))} is writable")


def _write_entry(source: Path, target: Path, meta: dict[str, Any]) -> None:
    """Copy ``source`` to ``target`` and write its sidecar, each atomically (sidecar last)."""
    with storage.atomic_local_path(str(target)) as tmp:
        shutil.copyfile(source, tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
    storage.write_text(str(_sidecar(target)), json.dumps(meta, indent=2))


def download(base_network: str, folder: Path | None = None, timeout_s: float = TIMEOUT_S) -> WeightsFile:
    """Download ``base_network``'s ImageNet weights into ``folder`` (default: the first writable cache folder).

    The zip goes to a temporary folder beside the target; the file must match GluonCV's SHA-1
    before it is renamed into place, so the cache never holds a partial or foreign file.
    Raises :class:`WeightsUnavailable` when the store cannot be reached, :class:`WeightsError`
    when what came back is not the published file.
    """
    folder = folder or _writable_cache()
    folder.mkdir(parents=True, exist_ok=True)
    url, name = download_url(base_network), file_name(base_network)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as tmp:
        archive = Path(tmp) / f"{name}.zip"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as answer, archive.open("wb") as out:
                shutil.copyfileobj(answer, out, _CHUNK)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise WeightsUnavailable(f"downloading {url} failed: {reason}") from exc
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extract(name, tmp)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise WeightsError(f"{url} is not GluonCV's zip of {name}: {exc}") from exc
        extracted = Path(tmp) / name
        expected = gluoncv_sha1(store_name(base_network))
        if (sha1 := _digest(extracted, "sha1")) != expected:
            raise WeightsError(f"{url}: {name} has SHA-1 {sha1}, GluonCV's model store publishes {expected}")
        meta = {"sha256": _digest(extracted, "sha256"), "source": "download", "url": url, "gluoncv_sha1": True,
                "base_network": base_network, "added": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        _write_entry(extracted, folder / name, meta)
    return _entry(base_network, folder / name)


def resolve(base_network: str, *, allow_download: bool | None = None) -> WeightsFile:
    """The ImageNet weights of ``base_network``: from the cache, else downloaded (see the module doc).

    ``allow_download`` None follows ``$DETECTION_PRETRAINED_DOWNLOAD``. Raises :class:`WeightsUnavailable`
    naming the file, the folders searched, why no download happened and how to import a file.
    """
    found = find(base_network)
    if found is not None:
        return found
    searched = " and ".join(str(folder) for folder in search_dirs())
    allow = download_enabled() if allow_download is None else allow_download
    why = f"{DOWNLOAD_ENV}=0 turns downloading off"
    if allow:
        try:
            return download(base_network)
        except WeightsUnavailable as exc:
            why = str(exc)
    raise WeightsUnavailable(
        f"the ImageNet weights of base_network {base_network} ({file_name(base_network)}) are not in the weights "
        f"cache ({searched}) and {why}; put them there with: {IMPORT_COMMAND.format(base=base_network)}",
        f"{file_name(base_network)} is not in the weights cache and {'could not be downloaded' if allow else why}",
    )


# --- checking a file against the base network --------------------------------------------------------


def expected_shapes(base_network: str) -> dict[str, tuple[int, ...]]:
    """Every layer of the base network's ImageNet model (GluonCV's names) and its full shape.

    Shapes come from symbolic inference over the whole network: Gluon itself leaves some
    dimensions open until the first forward pass (a depthwise kernel is ``(32, 0, 3, 3)``), and
    its loader would accept a wrong size there.
    """
    import mxnet as mx

    spec = layout(base_network, 300)
    with mx.name.NameManager():  # leaves the process's layer numbering as it was
        net = classifier(spec, frozen_statistics=False)
    outputs = net(mx.sym.var("data"))
    symbol = mx.sym.Group(list(outputs)) if isinstance(outputs, (list, tuple)) else outputs
    size = spec.reference_size if spec.vgg_extractor else 224
    args, _, aux = symbol.infer_shape(data=(1, 3, size, size))
    by_symbol = dict(zip(symbol.list_arguments(), args, strict=True))
    by_symbol.update(zip(symbol.list_auxiliary_states(), aux, strict=True))
    return {name: tuple(by_symbol[p.name]) for name, p in net._collect_params_with_prefix().items()
            if p.name in by_symbol}


def _load_arrays(path: Path) -> dict[str, Any]:
    """The named arrays of an MXNet parameter file, names as Gluon's (an exported model's ``arg:``/``aux:`` dropped)."""
    import mxnet as mx

    try:
        loaded = mx.nd.load(str(path))
    except mx.base.MXNetError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        last = lines[-1].removeprefix("MXNetError: ") if lines else type(exc).__name__  # after MXNet's C++ trace
        raise WeightsError(f"{path} is not an MXNet parameter file (truncated or corrupt): {last}") from None
    if not isinstance(loaded, dict):
        raise WeightsError(f"{path} holds an unnamed list of {len(loaded)} arrays, not named layers")
    return {name.split(":", 1)[-1]: array for name, array in loaded.items()}


def _closest_layout(names: set[str], base_network: str) -> str:
    """' (it looks like <other base network>'s)' when the names fit another base network better."""
    from include.training.hyperparameters import LOCAL_BASE_NETWORKS

    overlap = {other: len(names & set(expected_shapes(other))) for other in LOCAL_BASE_NETWORKS}
    best = max(overlap, key=lambda other: overlap[other])
    return f" (its layer names are {store_name(best)}'s)" if best != base_network and overlap[best] else ""


def check_arrays(path: Path, arrays: dict[str, Any], base_network: str) -> int:
    """Check that ``arrays`` (read from ``path``) fit ``base_network`` layer by layer; the number of layers.

    In order: every layer present (optional ones aside), no layer the network lacks, every shape
    equal to the inferred one, values finite, BatchNorm variances positive. Raises
    :class:`WeightsError` naming the file and the first layer that does not fit.
    """
    import numpy as np

    spec: BaseLayout = layout(base_network, 300)
    store, shapes = spec.store_name, expected_shapes(base_network)
    missing = [n for n in shapes if n not in arrays and not n.startswith(spec.optional_layers)]
    if missing:
        raise WeightsError(
            f"{path} does not fit {store} (base_network {base_network}): it lacks layer {missing[0]} of shape "
            f"{shapes[missing[0]]} ({len(missing)} of {len(shapes)} layers missing; the file has {len(arrays)} "
            f"layers){_closest_layout(set(arrays), base_network)}"
        )
    unknown = sorted(n for n in arrays if n not in shapes)
    if unknown:
        raise WeightsError(f"{path} does not fit {store}: layer {unknown[0]} is not part of it "
                           f"({len(unknown)} such layers)")
    for name, array in arrays.items():
        if tuple(array.shape) != shapes[name]:
            raise WeightsError(f"{path} does not fit {store}: layer {name} has shape {tuple(array.shape)}, "
                               f"{store} needs {shapes[name]}")
        values = array.asnumpy()
        if not np.isfinite(values).all():
            raise WeightsError(f"{path}: layer {name} holds NaN or infinite values")
        if name.endswith("running_var") and (values <= 0).any():
            raise WeightsError(f"{path}: layer {name} holds a non-positive variance")
    return len(arrays)


def check_cached(weights: WeightsFile) -> WeightsFile:
    """``weights`` after :func:`check_arrays` passed on its file (a cache entry may have been put there by hand)."""
    check_arrays(weights.path, _load_arrays(weights.path), weights.base_network)
    return weights


def check_file(path: Path, base_network: str) -> int:
    """:func:`check_arrays` on the file, then one forward pass of an SSD built on it; the number of layers."""
    import mxnet as mx
    import numpy as np

    from include.training.ssd_network import build_ssd

    layers = check_arrays(path, _load_arrays(path), base_network)
    size = 300 if base_network != "mobilenet-1.0" else 128
    outputs = build_ssd(base_network, size, ["object"], path)(mx.nd.zeros((1, 3, size, size)))
    if not all(np.isfinite(out.asnumpy()).all() for out in outputs):
        raise WeightsError(f"{path}: an SSD with these weights computes NaN or infinite values")
    return layers


def import_weights(
    source: Path, base_network: str, folder: Path | None = None, converted_from: Path | None = None
) -> WeightsFile:
    """Check ``source`` against ``base_network`` and put it into the cache under the model store's name.

    Nothing is written unless every check passed; the copy and its sidecar (sha256, source file,
    time) are each renamed into place. ``folder`` defaults to the first writable cache folder.
    The file is copied byte for byte (same sha256), unless its layer names carry an exported
    model's ``arg:``/``aux:`` prefixes: then it is saved again with GluonCV's names.
    ``converted_from``: the file ``source`` was converted from (recorded as the source file).
    """
    import mxnet as mx

    source = Path(source)
    if not source.is_file():
        raise WeightsError(f"{source}: no such file")
    arrays = _load_arrays(source)
    layers = check_arrays(source, arrays, base_network)
    target_folder = folder or _writable_cache()
    target_folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".import-", dir=target_folder) as tmp:
        normalized = Path(tmp) / file_name(base_network)
        if set(arrays) == set(mx.nd.load(str(source))):
            shutil.copyfile(source, normalized)
        else:
            mx.nd.save(str(normalized), arrays)
        check_file(normalized, base_network)
        meta = {
            "sha256": _digest(normalized, "sha256"),
            "source": "import",
            "source_file": str((converted_from or source).resolve()),
            "source_sha256": _digest(converted_from or source, "sha256"),
            **({"converted": "TF-slim MobileNet v1 frozen graph"} if converted_from else {}),
            "gluoncv_sha1": _digest(normalized, "sha1") == gluoncv_sha1(store_name(base_network)),
            "base_network": base_network,
            "layers": layers,
            "added": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        _write_entry(normalized, target_folder / file_name(base_network), meta)
    return _entry(base_network, target_folder / file_name(base_network))
