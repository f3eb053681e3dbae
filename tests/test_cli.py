"""The detection-pipeline console script: one subcommand per stage, clear errors, the resolved config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from include.cli import build_parser, main
from include.configs import PARAM_KEYS

CLI = str(Path(sys.executable).with_name("detection-pipeline"))
STAGES = ("ingest", "validate", "build-recordio", "train", "tune", "evaluate", "deploy", "invoke", "teardown", "run")


def test_every_stage_has_a_subcommand() -> None:
    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    assert set(STAGES) | {"config", "stack", "tracking", "models", "promote", "rollback"} <= set(commands)


def test_run_takes_every_dag_param() -> None:
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # noqa: SLF001
    assert set(PARAM_KEYS) <= {action.dest for action in run._actions}  # noqa: SLF001


def test_console_script_shows_the_resolved_config() -> None:
    out = subprocess.run([CLI, "config", "show"], capture_output=True, text=True, check=True)
    config = json.loads(out.stdout)
    assert config["backend"] == "local" and config["storage"]["base_uri"].startswith("file://")


def test_stack_is_handed_to_the_developer_tooling() -> None:
    # `stack` runs devtools.stack in its own interpreter: the package itself never imports it.
    out = subprocess.run([CLI, "stack", "--help"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("usage: detection-pipeline stack") and "{up,down,run}" in out.stdout
    bad = subprocess.run([CLI, "stack", "sideways"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'sideways'" in bad.stderr


def test_bad_configuration_exits_2_naming_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "--backend", "sagemaker"]) == 2
    err = capsys.readouterr().err
    assert "sagemaker.role_arn" in err and "sagemaker.bucket" in err


def test_bad_input_exits_1_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing-here"
    code = main(["validate", "--input", str(missing), "--output", str(tmp_path / "out")])
    assert code != 0
    assert "nothing-here" in capsys.readouterr().err


def test_a_missing_data_set_folder_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "BCCDX"
    assert main(["ingest", "--format", "voc", "--source", str(missing), "--output", str(tmp_path / "out")]) == 1
    assert f"data set folder not found: file://{missing}" in capsys.readouterr().err


def test_malformed_options_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--input", str(tmp_path), "--output", str(tmp_path / "out"), "-H", "epochs"]) == 1
    assert "detection-pipeline train: expected NAME=VALUE, got 'epochs'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["invoke", "--endpoint", "e", "--image", "x.jpg", "--threshold", "5"])
    assert exit_info.value.code == 2 and "--threshold: must be within 0..1, got 5" in capsys.readouterr().err


def test_aws_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(key, str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookup either: offline
    code = main(["ingest", "--format", "voc", "--source", "s3://no-bucket/BCCD", "--output", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err
    assert err == "detection-pipeline ingest: AWS: Unable to locate credentials (NoCredentialsError)\n"


def test_run_rejects_unknown_format() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ingest", "--format", "coco", "--source", "x", "--output", "y"])


def test_registry_commands_name_the_missing_tracking_server(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("DETECTION__TRACKING__URI", raising=False)
    monkeypatch.setenv("DETECTION__TRACKING__LOCAL_DIR", str(tmp_path / "mlflow"))
    for argv in (["models"], ["promote", "--version", "3"], ["rollback"]):
        assert main(argv) == 2
        assert "key 'tracking.uri' = None: no tracking server is configured" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["promote"])  # --version is required
    assert "the following arguments are required: --version" in capsys.readouterr().err


def test_tracking_status_of_a_folder_without_a_server(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DETECTION__TRACKING__LOCAL_DIR", str(tmp_path / "mlflow"))
    assert main(["tracking", "status"]) == 0
    assert json.loads(capsys.readouterr().out)["running"] is False
    assert main(["tracking", "down"]) == 0
    assert json.loads(capsys.readouterr().out)["stopped"] is False
