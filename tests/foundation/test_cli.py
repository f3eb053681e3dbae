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
    assert set(STAGES) | {"config", "stack"} <= set(commands)


def test_run_takes_every_dag_param() -> None:
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # noqa: SLF001
    assert set(PARAM_KEYS) <= {action.dest for action in run._actions}  # noqa: SLF001


def test_console_script_shows_the_resolved_config() -> None:
    out = subprocess.run([CLI, "config", "show"], capture_output=True, text=True, check=True)
    config = json.loads(out.stdout)
    assert config["backend"] == "local" and config["storage"]["base_uri"].startswith("file://")


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


def test_run_rejects_unknown_format() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ingest", "--format", "coco", "--source", "x", "--output", "y"])
