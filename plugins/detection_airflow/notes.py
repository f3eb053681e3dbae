"""A step's cache outcome on its Airflow task instance: a note in the UI and the task state store.

Importing the plugin package adds :func:`record_cache_outcome` as a listener of :mod:`include.cache`, so
every step that looks the cache up inside a task reports there, whichever task body it runs in.

* The **task state store** (``cache.<step>``): the outcome as JSON, no credentials needed; the UI
  shows it in the task instance's "Task State Store" tab.
* A **note** on the task instance for a hit (``cache hit: training 3f2a9c1e4b7d from run ...``). The
  Task SDK has no call for a task instance's note, so the task asks Airflow's public REST API
  (``PATCH .../taskInstances/{task_id}[/{map_index}]``) as the user of the ``airflow_api`` connection
  (``http://<user>:<password>@<host>:<port>``; SimpleAuthManager's ``USER`` role is enough). Without
  that connection, or when the API does not answer, the note is skipped with a log line: a note is
  never worth failing a task for.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from detection_airflow.credentials import TASK_MARKER

if TYPE_CHECKING:
    from include.cache import Outcome

log = logging.getLogger(__name__)

API_CONN_ID = "airflow_api"
#: The REST API's limit on a note.
MAX_NOTE_LENGTH = 1000
TIMEOUT_S = 10


def record_cache_outcome(outcome: Outcome) -> None:
    """The cache listener: the outcome in the task state store, and a note for a hit (inside a task only)."""
    if not os.environ.get(TASK_MARKER):
        return
    from airflow.sdk import get_current_context

    try:
        context = get_current_context()
    except Exception:  # not in a task's execution (a callback, a test calling the stage directly)
        return
    store = context.get("task_state_store")
    if store is not None:
        store.set(f"cache.{outcome.step}", outcome.as_dict())
    if outcome.hit:
        set_note(context, outcome.message())


def note_url(base: str, ti: Any) -> str:
    """The REST API route of the task instance ``ti`` (its map index's route when it is mapped)."""
    path = f"/api/v2/dags/{quote(ti.dag_id, safe='')}/dagRuns/{quote(ti.run_id, safe='')}/taskInstances/"
    path += quote(ti.task_id, safe="")
    if getattr(ti, "map_index", -1) is not None and ti.map_index >= 0:
        path += f"/{ti.map_index}"
    return base.rstrip("/") + path


def set_note(context: Any, text: str) -> bool:
    """Put ``text`` on the running task instance's note through the REST API; False (logged) when it cannot."""
    import requests
    from airflow.sdk import Connection

    try:
        conn = Connection.get(API_CONN_ID)
    except Exception:
        log.info("no %s connection: the task instance gets no note (%s)", API_CONN_ID, text)
        return False
    scheme = conn.conn_type if conn.conn_type in ("http", "https") else "http"
    base = f"{scheme}://{conn.host}:{conn.port or 8080}"
    try:
        token = requests.post(
            f"{base}/auth/token", json={"username": conn.login, "password": conn.password}, timeout=TIMEOUT_S
        )
        token.raise_for_status()
        answer = requests.patch(
            note_url(base, context["ti"]),
            json={"note": text[:MAX_NOTE_LENGTH]},
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=TIMEOUT_S,
        )
        answer.raise_for_status()
    except Exception as exc:
        log.warning("could not set the task instance's note through %s: %s", base, exc)
        return False
    return True
