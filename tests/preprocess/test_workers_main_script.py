"""Pool workers never re-run the caller's ``__main__`` script (in an Airflow task: the ``airflow`` CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_workers_do_not_rerun_a_main_script_that_fails_on_import(tmp_path: Path) -> None:
    # Like the `airflow` console script inside a task: importing it again fails (the DB URL is blocked).
    script = tmp_path / "task_main.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        if os.environ.get("MAIN_ALREADY_RAN"):
            raise RuntimeError("the main script was re-run in a worker")
        os.environ["MAIN_ALREADY_RAN"] = "1"
        import math
        from include.preprocess.workers import ordered_map, process_pool
        with process_pool(2) as pool:
            print(list(ordered_map(math.sqrt, [1.0, 4.0, 9.0], pool)))
        print(sys.modules["__main__"].__file__ == {str(script)!r})
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[1.0,", "2.0,", "3.0]", "True"]  # results, and __file__ restored


def _pool_in_a_daemon(queue) -> None:  # runs in a daemonic child, as a Celery prefork pool's task does
    import math

    from include.preprocess.workers import ordered_map, process_pool

    with process_pool(2) as pool:
        queue.put((pool, list(ordered_map(math.sqrt, [1.0, 4.0], pool))))


def test_a_daemonic_process_works_alone_instead_of_failing() -> None:
    import multiprocessing

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_pool_in_a_daemon, args=(queue,), daemon=True)
    child.start()
    child.join(60)
    assert child.exitcode == 0 and queue.get(timeout=5) == (None, [1.0, 2.0])
