"""A run's artifacts: files of the pipeline's run folders copied to the run's artifact URI.

Where the server lets clients write their artifacts themselves (the local server, SageMaker's
managed MLflow: ``file://`` or ``s3://`` artifact URIs) the copy goes through
:mod:`include.storage`, atomic like every other write of the pipeline; a server that proxies
artifacts (``mlflow-artifacts:/``, ``mlflow server``'s default) takes them by HTTP PUT.
"""

from __future__ import annotations

from include import storage
from include.tracking.runs import Run, TrackingRef, client

PROXIED = "mlflow-artifacts:"


def target_uri(run: Run, path: str) -> str:
    """Where the artifact ``path`` (``model/model.tar.gz``) of ``run`` lives."""
    return f"{run.artifact_uri.rstrip('/')}/{path.strip('/')}"


def log_file(ref: TrackingRef, run: Run, source_uri: str, folder: str = "") -> str:
    """Copy the file ``source_uri`` into ``run``'s artifacts (under ``folder``); returns its artifact URI."""
    name = storage.normalize(source_uri).rsplit("/", 1)[-1]
    path = f"{folder.strip('/')}/{name}" if folder.strip("/") else name
    target = target_uri(run, path)
    if run.artifact_uri.startswith(PROXIED):
        proxied_path = run.artifact_uri[len(PROXIED) :].lstrip("/")
        client(ref.uri).put_artifact(f"{proxied_path}/{path}", storage.read_bytes(source_uri))
    else:
        storage.copy_file(source_uri, target)
    return target


def log_folder(ref: TrackingRef, run: Run, folder_uri: str, folder: str) -> list[str]:
    """Copy every file under ``folder_uri`` into ``run``'s artifacts under ``folder`` (sub-folders kept)."""
    if not storage.exists(folder_uri):
        return []
    logged = []
    for uri in storage.walk_files(folder_uri):
        sub = storage.relative(uri, folder_uri).rsplit("/", 1)
        logged.append(log_file(ref, run, uri, f"{folder}/{sub[0]}" if len(sub) > 1 else folder))
    return logged
