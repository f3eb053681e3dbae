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
