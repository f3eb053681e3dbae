"""Content-addressed step cache: an expensive step whose inputs did not change reuses its earlier outputs.

A step's **key** is a SHA-256 over what determines its output (the content of its data, its
options, the code's version), never over run ids or paths; :mod:`include.cache_keys` computes the
keys of the RecordIO build, training and evaluation. An **entry** is a snapshot of the outputs
the step produced, under the cache's own folder (``<storage>/_cache`` by default)::

    <cache>/<step>/<key[:2]>/<key>/files/...    the step's output files (relative to its folder)
    <cache>/<step>/<key[:2]>/<key>/entry.json   written last: the entry is complete

Entries hold their own copies, so a run that deletes its intermediate files (or a later stage
that rewrites a file, as export rewrites report.html) does not spoil them. Locally a copy is a
hard link (no space, no time; every write in this project replaces a file by rename, so linked
files are never changed under another name), on S3 a server-side CopyObject.

* A failed step never writes ``entry.json``; copied files without it are not an entry. So entries
  survive a failed run only when they are complete.
* A lookup checks every file at its recorded size; an entry pointing at deleted files is a miss
  (logged, and the entry removed), never an error.
* A hit copies the files into the new run's folder (every later task reads its own run's layout,
  as usual) and answers the step's earlier result with its URIs moved to the new folder.

Every outcome, hit or miss, is reported through :func:`announce`: one line in the task log and
each listener added with :func:`add_listener` (the Airflow plugin notes hits on the task
instance; run tracking can tag the run). Listeners never fail a step.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from include import storage

log = logging.getLogger(__name__)

#: Bumped when the entry layout or the key's framing changes (every older entry becomes a miss).
FORMAT_VERSION = 1
ENTRY_FILE = "entry.json"
FILES_DIR = "files"
#: In a step's folder of a run: the step's cache outcome (hit or miss, key, source run).
MARKER_FILE = "cache.json"
#: JSON records up to this size are copied with their URIs moved to the new run (:func:`rebase`).
MAX_REBASED_BYTES = 4 << 20


def cache_key(step: str, parts: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of ``step`` and ``parts`` as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps({"step": step, "format": FORMAT_VERSION, "parts": parts}, sort_keys=True,
                      separators=(",", ":"), default=str)  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Outcome:
    """What happened to one step's cache lookup: shown in the task log, the task instance and tracking."""

    step: str
    key: str
    hit: bool
    reason: str  # a hit: where it came from; a miss: why (no entry, deleted files, a fresh run asked for)
    source_dag_id: str | None = None
    source_run_id: str | None = None
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def message(self) -> str:
        if not self.hit:
            return f"cache miss: {self.step} {self.key[:12]} ({self.reason}): running the step"
        return (
            f"cache hit: {self.step} {self.key[:12]} from run {self.source_run_id} "
            f"({self.files} files, {self.bytes / 1e6:.1f} MB) reused in {self.seconds:.1f} s"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Listener = Callable[[Outcome], None]
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    """Call ``listener`` with every outcome (once per listener, however often it is added)."""
    if listener not in _listeners:
        _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def announce(outcome: Outcome, own: Listener | None = None) -> None:
    """Log ``outcome`` (one line) and hand it to the listeners (``own``: the cache's, e.g. its run's tracking);
    a failing listener is logged, never raised."""
    log.info("%s", outcome.message())
    for listener in [*_listeners, *([own] if own else [])]:
        try:
            listener(outcome)
        except Exception:
            log.warning("cache listener %r failed", listener, exc_info=True)


def rebase(value: Any, old_root: str, new_root: str) -> Any:
    """``value`` with every string under ``old_root`` moved under ``new_root`` (dicts and lists recursed)."""
    if isinstance(value, str):
        if value == old_root or value.startswith(old_root.rstrip("/") + "/"):
            return new_root.rstrip("/") + value[len(old_root.rstrip("/")) :]
        return value
    if isinstance(value, Mapping):
        return {k: rebase(v, old_root, new_root) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rebase(v, old_root, new_root) for v in value]
    return value


@dataclass(frozen=True)
class Entry:
    """A complete cache entry as ``entry.json`` holds it."""

    step: str
    key: str
    root: str  # the step's folder in the run that produced it
    files: list[dict[str, Any]]  # {"path": relative to root, "bytes"}
    result: dict[str, Any]
    source: dict[str, str] = field(default_factory=dict)  # dag_id, run_id
    created: str = ""
    about: dict[str, Any] = field(default_factory=dict)  # a readable summary of what the key covers
    format: int = FORMAT_VERSION


@dataclass(frozen=True)
class StepCache:
    """One step's entries in the cache at ``uri``, for one run (``source``: its DAG id and run id).

    ``lookup`` false (a fresh run asked for) still records: the next run can reuse this one's outputs.
    """

    uri: str
    step: str
    dag_id: str
    run_id: str
    lookup: bool = True
    #: told every outcome of this cache besides the global listeners (stages: the run's tracking)
    listener: Listener | None = None

    def entry_uri(self, key: str) -> str:
        return storage.join(self.uri, self.step, key[:2], key)

    def find(self, key: str) -> tuple[Entry | None, str]:
        """The complete entry of ``key`` with every file in place, else None and why."""
        folder = self.entry_uri(key)
        entry_file = storage.join(folder, ENTRY_FILE)
        if not storage.exists(entry_file):
            return None, "no entry"
        try:
            entry = Entry(**json.loads(storage.read_text(entry_file)))
        except (ValueError, TypeError) as exc:
            reason = f"unreadable entry {entry_file}: {exc}"
        else:
            if entry.format != FORMAT_VERSION:
                return None, f"entry format {entry.format}, this code reads {FORMAT_VERSION}"
            missing = self._first_missing(folder, entry.files)
            if missing is None:
                return entry, ""
            reason = f"the entry points at deleted files ({missing})"
        log.warning("cache entry %s/%s: %s; removing it", self.step, key[:12], reason)
        storage.remove(entry_file)
        storage.remove(folder, recursive=True)
        return None, reason

    @staticmethod
    def _first_missing(folder: str, files: Iterable[Mapping[str, Any]]) -> str | None:
        for file in files:
            uri = storage.join(folder, FILES_DIR, file["path"])
            if not storage.exists(uri) or storage.size(uri) != file["bytes"]:
                return file["path"]
        return None

    def reuse(self, key: str, target_root: str) -> tuple[Outcome, dict[str, Any] | None]:
        """Look ``key`` up; on a hit copy its files under ``target_root`` and answer its result moved there.

        The outcome is announced and written to ``<target_root>/cache.json`` either way.
        """
        if not self.lookup:
            entry, reason = None, "a fresh run was asked for (use_cache=false)"
        else:
            entry, reason = self.find(key)
        if entry is None:
            outcome = Outcome(self.step, key, False, reason)
            self._mark(target_root, outcome)
            announce(outcome, self.listener)
            return outcome, None
        started = time.monotonic()
        folder = storage.join(self.entry_uri(key), FILES_DIR)
        target_root = storage.normalize(target_root)
        for file in entry.files:
            source, target = storage.join(folder, file["path"]), storage.join(target_root, file["path"])
            if file["path"].endswith(".json") and file["bytes"] <= MAX_REBASED_BYTES:
                _write_rebased(source, target, entry.root, target_root)
            else:
                storage.copy(source, target)
        outcome = Outcome(
            self.step, key, True, f"run {entry.source.get('run_id')}", entry.source.get("dag_id"),
            entry.source.get("run_id"), len(entry.files), sum(f["bytes"] for f in entry.files),
            round(time.monotonic() - started, 3),
        )  # fmt: skip
        result = {**rebase(entry.result, entry.root, target_root), "cache": outcome.as_dict()}
        self._mark(target_root, outcome, result)
        announce(outcome, self.listener)
        return outcome, result

    def store(
        self,
        key: str,
        root: str,
        result: Mapping[str, Any],
        files: Iterable[str] | None = None,
        about: Mapping[str, Any] | None = None,
    ) -> Entry:
        """Record the step's outputs: ``files`` (URIs under ``root``; default every file there) and ``result``.

        The files are copied first and ``entry.json`` written last, so a failure leaves no entry.
        """
        root = storage.normalize(root)
        uris = sorted(files) if files is not None else storage.walk_files(root)
        folder = self.entry_uri(key)
        listed = []
        for uri in uris:
            rel = storage.relative(uri, root)
            if rel == MARKER_FILE:
                continue
            target = storage.copy(uri, storage.join(folder, FILES_DIR, rel))
            listed.append({"path": rel, "bytes": storage.size(target)})
        entry = Entry(
            step=self.step,
            key=key,
            root=root,
            files=listed,
            result={k: v for k, v in result.items() if k != "cache"},
            source={"dag_id": self.dag_id, "run_id": self.run_id},
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            about=dict(about or {}),
        )
        storage.write_text(storage.join(folder, ENTRY_FILE), json.dumps(asdict(entry), indent=2, default=str))
        log.info("cache: recorded %s %s (%d files)", self.step, key[:12], len(listed))
        return entry

    @staticmethod
    def _mark(target_root: str, outcome: Outcome, result: Mapping[str, Any] | None = None) -> None:
        marker = {**outcome.as_dict(), **({"result": result} if result is not None else {})}
        storage.write_text(storage.join(target_root, MARKER_FILE), json.dumps(marker, indent=2, default=str))


def _write_rebased(source: str, target: str, old_root: str, new_root: str) -> None:
    """Copy a small JSON record (training.json, tuning.json, ...) with its URIs under ``old_root`` moved to
    ``new_root``, so the reused outputs name the run they now belong to; a file that is not JSON is copied."""
    try:
        data = json.loads(storage.read_text(source))
    except ValueError:
        storage.copy(source, target)
        return
    storage.write_text(target, json.dumps(rebase(data, old_root, new_root), indent=2))


def read_marker(folder: str) -> dict[str, Any] | None:
    """The cache outcome a step wrote into its folder (``cache.json``; a hit's with its ``result``), or None."""
    uri = storage.join(folder, MARKER_FILE)
    return json.loads(storage.read_text(uri)) if storage.exists(uri) else None


@dataclass(frozen=True)
class JobCache:
    """The cache of a training or tuning request: keyed by ``key_of(operation, request)``, holding the job's
    folder (a tuning job: every trial's too) under the run's training folder ``root``."""

    step_cache: StepCache
    root: str
    key_of: Callable[[str, Mapping[str, Any]], str]

    def lookup(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any] | None:
        """The earlier job's result with its files copied under ``root``, or None (a miss)."""
        return self.step_cache.reuse(self.key_of(operation, request), self.root)[1]

    def record(self, operation: str, request: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        """Keep the finished job's outputs for later runs (a job that ended without a model is not kept)."""
        if result.get("status") not in ("Completed", "Stopped") or not result.get("artifact_uri"):
            return
        root = storage.normalize(self.root)
        if result.get("tuning_job_name"):
            files = None  # the tuning job's folder and every trial's
        else:
            job_folder = storage.join(root, storage.relative(result["artifact_uri"], root).split("/", 1)[0])
            files = storage.walk_files(job_folder)
        self.step_cache.store(self.key_of(operation, request), root, result, files,
                              about={"job_name": result.get("job_name"), "operation": operation})  # fmt: skip
