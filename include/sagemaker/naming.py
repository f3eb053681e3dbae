"""Names and tags of a run's SageMaker resources: unique per DAG run and try, readable, deterministic.

A run's name for a resource is ``<kind>-<dag id and run id, shortened>-<run token>``: it derives
from the run, not the try, so a retried task finds what an earlier try created (and re-attaches
to a job still running, takes a finished one, adopts a model or endpoint) instead of paying for
it twice (:mod:`include.reattach`). A job started after one that failed gets the try's suffix,
``...-<run token>-t<try>``. The run token (10 hex digits of a SHA-256 of the DAG id and run id)
appears in every name of the run, so the run's jobs, models, endpoint configs and endpoints are
found again with ``NameContains=<token>`` (teardown).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

TRAINING = "train"
TUNING = "tune"
MODEL = "model"
ENDPOINT_CONFIG = "epconf"
ENDPOINT = "endpoint"
TRANSFORM = "transform"

#: SageMaker's length limits (tuning job names are short: 32 characters).
MAX_NAME_LENGTH = 63
MAX_LENGTHS: dict[str, int] = {TUNING: 32}

TOKEN_LENGTH = 10
#: Characters kept free in a run's name for a try's suffix (``-t99-9``).
RETRY_SUFFIX_ROOM = 6

DAG_ID_TAG = "airflow-dag-id"
RUN_ID_TAG = "airflow-run-id"
TRY_NUMBER_TAG = "airflow-try-number"
RUN_TOKEN_TAG = "detection-run-token"
KEEP_UNTIL_TAG = "keep-until"
#: On a local training request: why it trains from scratch although the profile asked for ImageNet weights.
PRETRAINED_FALLBACK_TAG = "pretrained-fallback"

_TAG_VALUE_FORBIDDEN = re.compile(r"[^\w\s.:/=+\-@]")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def run_token(dag_id: str, run_id: str) -> str:
    """The run's token: 10 hex digits of SHA-256 over the DAG id and run id."""
    return hashlib.sha256(f"{dag_id}\n{run_id}".encode()).hexdigest()[:TOKEN_LENGTH]


def job_name(
    kind: str,
    dag_id: str,
    run_id: str,
    try_number: int | None = None,
    *,
    attempt: int = 0,
    max_length: int | None = None,
) -> str:
    """A SageMaker name for ``kind`` in this DAG run (at most 63 characters, 32 for tuning jobs).

    Matches ``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``; the same arguments always give the same name.
    Without ``try_number`` it is the run's name; with one, the name of a job that try started after
    an earlier one failed (``<run's name>-t<try>``; ``attempt`` > 0: ``...-t<try>-<attempt>``, for
    when that is taken too). Room for that suffix is kept, so the run's name is a prefix of its tries'.
    """
    kind_slug = _slug(kind)
    if not kind_slug:
        raise ValueError(f"job kind {kind!r} has no letters or digits")
    if not dag_id or not run_id:
        raise ValueError(f"dag_id and run_id must be non-empty (got {dag_id!r}, {run_id!r})")
    if try_number is not None and (isinstance(try_number, bool) or not isinstance(try_number, int) or try_number < 0):
        raise ValueError(f"try_number must be a non-negative integer (got {try_number!r})")
    limit = max_length or MAX_LENGTHS.get(kind_slug, MAX_NAME_LENGTH)
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise ValueError(f"attempt must be a non-negative integer (got {attempt!r})")
    suffix = "" if try_number is None else f"-t{try_number}" + (f"-{attempt}" if attempt else "")
    token = run_token(dag_id, run_id)
    room = limit - len(kind_slug) - len(token) - max(RETRY_SUFFIX_ROOM, len(suffix)) - 2
    if room < 0:
        raise ValueError(f"a {kind_slug!r} name cannot fit in {limit} characters")
    readable = _slug(f"{dag_id}-{run_id}")[:room].strip("-")
    return "-".join(part for part in (kind_slug, readable, token) if part) + suffix


def tag_value(text: str) -> str:
    """``text`` made a valid tag value (at most 256 characters of letters, digits, spaces and ``_.:/=+-@``)."""
    return _TAG_VALUE_FORBIDDEN.sub("_", text)[:256]


def keep_until(now: datetime, minutes: int) -> str:
    """The ``keep-until`` tag value: ``now`` + ``minutes`` as an ISO time in UTC."""
    if minutes < 0:
        raise ValueError(f"keep minutes must be >= 0 (got {minutes})")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return (now + timedelta(minutes=minutes)).astimezone(UTC).isoformat(timespec="seconds")


def parse_keep_until(value: str) -> datetime:
    """A ``keep-until`` tag value as an aware datetime (naive times are UTC); ``ValueError`` when unreadable."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RunIdentity:
    """The DAG run and try a request belongs to; gives its names and tags."""

    dag_id: str
    run_id: str
    try_number: int

    @property
    def token(self) -> str:
        return run_token(self.dag_id, self.run_id)

    def name(self, kind: str) -> str:
        """The run's name of its resource of ``kind``, the same in every try (see :func:`job_name`)."""
        return job_name(kind, self.dag_id, self.run_id)

    def try_name(self, kind: str, attempt: int = 0) -> str:
        """The name of a ``kind`` job this try starts after an earlier one failed: ``<run's name>-t<try>``."""
        return job_name(kind, self.dag_id, self.run_id, self.try_number, attempt=attempt)

    def tags(self, extra: Mapping[str, str] | None = None) -> list[dict[str, str]]:
        """``Tags`` naming the DAG id, run id, try number and run token (plus ``extra``)."""
        values = {
            DAG_ID_TAG: self.dag_id,
            RUN_ID_TAG: self.run_id,
            TRY_NUMBER_TAG: str(self.try_number),
            RUN_TOKEN_TAG: self.token,
            **(extra or {}),
        }
        return [{"Key": key, "Value": tag_value(value)} for key, value in values.items()]
