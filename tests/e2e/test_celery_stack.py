"""The pipeline on the Celery stack: real PostgreSQL, Redis and two workers, one of them killed mid-shard.

One run of the DAG on a tiny data set. The workers build shards slowly (a test-only
``sitecustomize`` adds a sleep per image, :mod:`tests.support.slow_shards`), so the two shard
tasks run at the same time, one on each worker, and the test can kill ``worker-1``'s whole process
group while it is writing its shard's files. The scheduler notices the missing heartbeats, the
retry runs on ``worker-2``, and the run succeeds. Everything is checked in the
metadata database and on disk: which worker ran what, the failed try, the merged ``.rec``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
import psycopg2
import pytest

from devtools import local_stack
from include.preprocess.recordio import build_recordio
from include.project import PIPELINE_DAG_ID, PROJECT_ROOT
from include.recordio_codec import detection_record, iter_payloads, read_index, scan_offsets
from include.run_layout import safe_id
from tests.support.stack_sockets import listening

pytestmark = pytest.mark.slow

SLOW_SHARDS = Path(__file__).resolve().parents[1] / "support" / "slow_shards"
KILLED, SURVIVOR = "worker-1", "worker-2"
#: Seconds the scheduler waits for a task's heartbeat before failing it (Airflow's default: 300)
#: and how often it looks; not lower on a shared 2-CPU machine, where slow heartbeats are normal.
HEARTBEAT_TIMEOUT_S, DETECTION_INTERVAL_S = 20, 3


@pytest.fixture(scope="module")
def celery_stack(request: pytest.FixtureRequest) -> Iterator[dict]:
    root = Path(tempfile.mkdtemp(prefix="detection-celery-"))
    root.chmod(0o755)  # the postgres account keeps its data under the stack's home
    home, runs, endpoints = root / "home", root / "runs", root / "endpoints"
    env = {
        **local_stack.quick_run_env(runs, endpoints),
        "DETECTION__RECORDIO__WORKERS": "1",
        "DETECTION__TRAINING__HYPERPARAMETERS__IMAGE_SHAPE": "128",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": str(DETECTION_INTERVAL_S),
    }
    slow = {"PYTHONPATH": os.pathsep.join([str(SLOW_SHARDS), str(PROJECT_ROOT)]), "DETECTION_TEST_UNIT_DELAY_S": "0.5"}
    try:
        details = local_stack.start(
            home=home, port=local_stack.free_port(0), timeout_s=600, extra_env=env, executor="celery",
            worker_extra_env={KILLED: slow, SURVIVOR: slow},
        )  # fmt: skip
        yield {**details, "runs": runs, "endpoints": endpoints}
    finally:
        local_stack.stop(home)
        started = [*details["components"].values(), *details["services"].values()] if "details" in locals() else []
        left = [pid for pid in started if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
        assert not left, f"still running after stop: {left}"
        if request.session.testsfailed:  # keep the logs and task logs (the servers are stopped)
            print(f"\nthe Celery stack's home, logs and runs are kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def _query(database_url: str, sql: str, *args: object) -> list[tuple]:
    with contextlib.closing(psycopg2.connect(database_url.replace("+psycopg2", ""))) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def _kill_worker_while_it_writes_a_shard(stack: dict, run_id: str, timeout_s: float = 600) -> int:
    """Wait until the killed worker runs a shard task and has begun writing its files; SIGKILL its group."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = _query(
            stack["database_url"],
            "SELECT map_index FROM task_instance WHERE dag_id = %s AND run_id = %s "
            "AND task_id = 'build_recordio_shard' AND state = 'running' AND hostname LIKE %s",
            PIPELINE_DAG_ID, run_id, f"%:{KILLED}",
        )  # fmt: skip
        shards = stack["runs"] / PIPELINE_DAG_ID / safe_id(run_id) / "recordio" / "_shards"
        for (shard,) in rows:
            shard_dir = shards / f"shard-{shard:05d}"
            if list(shard_dir.glob(".*.tmp")):  # the shard's .rec/.idx/.lst are half written
                os.killpg(stack["components"][KILLED], signal.SIGKILL)
                return shard
        time.sleep(0.2)
    shards = _query(
        stack["database_url"], "SELECT map_index, state, hostname FROM task_instance WHERE dag_id = %s AND run_id = %s "
        "AND task_id = 'build_recordio_shard'", PIPELINE_DAG_ID, run_id,
    )  # fmt: skip
    raise TimeoutError(f"{KILLED} was never seen writing a shard: {shards}")


def test_every_server_the_stack_started_listens_on_loopback_only(celery_stack: dict) -> None:
    servers = listening([*celery_stack["components"].values(), *celery_stack["services"].values()])
    assert {address for _, address, _ in servers} == {"127.0.0.1"}, servers
    ports = {port for _, _, port in servers}
    for key in ("url", "log_server", "database_url", "broker_url"):
        url = celery_stack[key]
        assert int(url.rsplit(":", 1)[1].split("/")[0]) in ports, (url, servers)


def test_pipeline_runs_on_both_workers_and_a_killed_worker_s_shard_is_retried(celery_stack: dict, tmp_path) -> None:
    client = local_stack.AirflowClient(celery_stack["url"], celery_stack["username"], celery_stack["password"])
    client.wait_for_dag(PIPELINE_DAG_ID)
    run_id = client.trigger(PIPELINE_DAG_ID, {"epochs": 1, "dataset_source": "sample", "tune": False})
    killed_shard = _kill_worker_while_it_writes_a_shard(celery_stack, run_id)
    killed_at = datetime.now(UTC)
    run = client.wait_for_run(PIPELINE_DAG_ID, run_id, timeout_s=1200, poll_s=5)
    states = client.task_states(PIPELINE_DAG_ID, run_id)
    assert run["state"] == "success", states
    assert states["train"] == states["deploy"] == states["smoke_test"] == states["teardown"] == "success"

    # from the metadata database: who ran what, and the killed try
    db = celery_stack["database_url"]
    ran = dict(
        _query(db, "SELECT task_id || COALESCE('[' || NULLIF(map_index, -1) || ']', ''), hostname || '|' || queue "
               "FROM task_instance WHERE dag_id = %s AND run_id = %s AND state = 'success'", PIPELINE_DAG_ID, run_id)
    )  # fmt: skip
    hosts = {task: value.split("|")[0].rsplit(":", 1)[-1] for task, value in ran.items()}
    queues = {task: value.split("|")[1] for task, value in ran.items()}
    assert set(hosts.values()) == {KILLED, SURVIVOR}, hosts
    assert queues["train"] == "training" and hosts["train"] == SURVIVOR
    assert queues[f"build_recordio_shard[{killed_shard}]"] == queues["ingest"] == "cpu"
    assert hosts[f"build_recordio_shard[{killed_shard}]"] == SURVIVOR
    history = _query(
        db, "SELECT try_number, state, hostname FROM task_instance_history WHERE dag_id = %s AND run_id = %s "
        "AND task_id = 'build_recordio_shard' AND map_index = %s", PIPELINE_DAG_ID, run_id, killed_shard,
    )  # fmt: skip
    assert [(t, s, h.rsplit(":", 1)[-1]) for t, s, h in history] == [(1, "failed", KILLED)]
    (current,) = _query(
        db, "SELECT try_number, hostname FROM task_instance WHERE dag_id = %s AND run_id = %s "
        "AND task_id = 'build_recordio_shard' AND map_index = %s", PIPELINE_DAG_ID, run_id, killed_shard,
    )  # fmt: skip
    assert current[0] == 2 and current[1].endswith(f":{SURVIVOR}")
    ((failed_at, retried_at),) = _query(
        db, "SELECT h.end_date, t.start_date FROM task_instance_history h JOIN task_instance t USING (dag_id, run_id, "
        "task_id, map_index) WHERE h.dag_id = %s AND h.run_id = %s AND h.task_id = 'build_recordio_shard' "
        "AND h.map_index = %s", PIPELINE_DAG_ID, run_id, killed_shard,
    )  # fmt: skip
    print(f"\nkilled {KILLED}; its try failed {(failed_at - killed_at).total_seconds():.1f} s later, "
          f"the retry started on {SURVIVOR} {(retried_at - killed_at).total_seconds():.1f} s after the kill")

    # the merged channels: nothing half-written left, the same bytes as a one-process build
    run_root = celery_stack["runs"] / PIPELINE_DAG_ID / safe_id(run_id)
    assert not [p for p in run_root.rglob("*.tmp")], "a temporary file was left behind"
    recordio = run_root / "recordio"
    again = tmp_path / "again"
    options = json.loads((recordio / "recordio.json").read_text())["options"]
    options.pop("shards")
    build_recordio(str(run_root / "quality"), str(again), workers=1, **options)
    for split in ("train", "validation"):
        rec = recordio / split / f"{split}.rec"
        assert _sha256(rec) == _sha256(again / split / f"{split}.rec"), split
        ids = [detection_record(payload, where).header.id for where, payload in iter_payloads(rec)]
        lst_ids = [int(line.split("\t", 1)[0]) for line in (recordio / split / f"{split}.lst").read_text().splitlines()]
        assert ids == lst_ids and len(ids) > 0
        assert [offset for _, offset in read_index(recordio / split / f"{split}.idx")] == scan_offsets(rec)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
