"""The local tracking server's state: found by its folder, never mistaken for another process.

Starting and stopping a real server is what the session's ``mlflow_server`` fixture does (it uses
:func:`include.tracking.server.start` and :func:`~include.tracking.server.stop`)."""

from __future__ import annotations

import json
import os

from include.tracking import server


def test_a_folder_without_a_server_has_none_running(tmp_path) -> None:
    assert server.status(tmp_path) == {
        "running": False,
        "url": None,
        "pid": None,
        "folder": str(tmp_path),
        "log": str(tmp_path / server.LOG_FILE),
    }
    assert server.running_url(tmp_path) is None and server.stop(tmp_path) is False


def test_a_recorded_server_whose_process_is_another_is_not_running(tmp_path) -> None:
    # this very process, with another start time: a pid that was reused
    state = {"pid": os.getpid(), "create_time": 1.0, "port": 5, "url": "http://127.0.0.1:5", "artifacts": "x"}
    (tmp_path / server.STATE_FILE).write_text(json.dumps(state))
    assert server.running_url(tmp_path) is None


def test_an_unset_uri_means_the_running_local_server(local_tracking_server: dict) -> None:
    from include.configs import load_config
    from include.tracking.uri import resolve_uri

    cfg = load_config(overrides={"tracking": {"local_dir": local_tracking_server["folder"]}}, environ={})
    assert cfg.tracking.uri is None
    assert resolve_uri(cfg) == local_tracking_server["url"] == server.running_url(server.local_dir(cfg))
    assert server.start(server.local_dir(cfg), "unused")["pid"] == local_tracking_server["pid"]  # already running
