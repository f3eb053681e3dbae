"""The detection-pipeline console script: one subcommand per stage, clear errors, the resolved config."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from include.cli import build_parser, main
from include.configs import PARAM_KEYS

CLI = str(Path(sys.executable).with_name("detection-pipeline"))
STAGES = (
    "ingest", "validate", "build-recordio", "train", "tune", "evaluate", "export-model", "deploy", "invoke", "teardown",
    "run",
)  # fmt: skip


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
        build_parser().parse_args(["ingest", "--format", "tfrecord", "--source", "x", "--output", "y"])


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
    assert main(["--json", "tracking", "status"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["running"] is False
    assert "no tracking server runs in" in captured.err and "next: detection-pipeline tracking up" in captured.err
    assert main(["tracking", "down"]) == 0
    assert capsys.readouterr().err == f"no server ran in {tmp_path / 'mlflow'}\n"


def _subparsers() -> dict:
    return build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001


def test_every_option_has_help_and_shows_its_default() -> None:
    import argparse

    missing, no_default = [], []
    for name, sub in _subparsers().items():
        for action in sub._actions:  # noqa: SLF001
            if isinstance(action, argparse._HelpAction) or not action.option_strings:  # noqa: SLF001
                continue
            where = f"{name} {action.option_strings[-1]}"
            if not action.help:
                missing.append(where)
            elif action.default is None and action.nargs != 0 and not action.required and "default" not in action.help:
                no_default.append(where)  # an optional value whose default the help does not say
    assert missing == [] and no_default == []


def test_version_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("detection-pipeline 0.")


def test_one_class_list_syntax() -> None:
    for command in (["ingest", "--format", "voc", "--source", "s", "--output", "o"], ["run"]):
        assert build_parser().parse_args([*command, "--classes", "RBC, WBC"]).classes == ["RBC", "WBC"]


def _next_commands(lines: list[str]) -> list[list[str]]:
    import shlex

    return [shlex.split(line.removeprefix("next: "))[1:] for line in lines if line.startswith("next: ")]


def test_every_summary_ends_with_a_next_command_the_cli_accepts() -> None:
    from argparse import Namespace

    from include import cli_summaries as s

    splits = {"train": {"images": 8, "boxes": 9}, "validation": {"images": 2, "boxes": 2}, "test": {"images": 2,
                                                                                                      "boxes": 3}}
    cases = [
        (s.ingest, Namespace(output="/tmp/x/ingest"), {"images": 12, "boxes": 14, "classes": 2, "splits": splits,
                                                       "split_source": {"test": "seeded"}, "issues": 0}),
        (s.validate, Namespace(output="/tmp/x/quality"), {"rows_dropped": 2, "images_dropped": 0, "policy": "drop",
                                                          "images": 12, "boxes": 12,
                                                          "uris": {"quality_html": "q.html"}}),
        (s.build_recordio, Namespace(output="/tmp/x/recordio"), {"records": {"train": 16, "validation": 2}}),
        (s.train, Namespace(input="/tmp/x/recordio", output="/tmp/x/training"),
         {"TrainingJobName": "j", "TrainingJobStatus": "Completed", "BestValidationMAP": 0.4, "BestEpoch": 1,
          "ModelArtifacts": {"S3ModelArtifacts": "m.tar.gz"}, "HyperParameters": {"use_pretrained_model": "1"},
          "PretrainedWeights": {"base_network": "mobilenet-1.0", "file": "/c/mobilenet1.0-efbb2ca3.params",
                                "sha256": "1acbb0f7a7cfe1ce" + "0" * 48, "source": "cache"}}),
        (s.evaluate, Namespace(input="/tmp/x/training"), {"split": "test", "iou": 0.5, "map": 0.4, "coco_map": 0.2,
                                                          "images": 2, "report_uri": "r.html",
                                                          "promotion_threshold": 0.5}),
        (s.deploy, Namespace(keep_minutes=0), {"endpoint_name": "det", "status": "InService"}),
        (s.invoke, Namespace(endpoint="det"), {"summary": {"threshold": 0.5, "detections": 3, "per_class": {},
                                                           "best": {"class": "RBC", "score": 0.32}}}),
        (s.weights, Namespace(action="import"), {"base_network": "mobilenet-1.0", "source": "import",
                                                 "file": "/c/mobilenet1.0-efbb2ca3.params", "sha256": "1acbb0f7" * 8}),
    ]
    parser = build_parser()
    for summary, args, result in cases:
        lines = summary(args, result)
        commands = _next_commands(lines)
        assert len(commands) == 1, (summary.__name__, lines)
        parser.parse_args(commands[0])  # exits (fails the test) on anything the CLI would refuse
    assert "promotion: test mAP 0.4000 is below the threshold 0.5" in s.evaluate(*cases[4][1:])
    assert s.train(*cases[3][1:])[1] == ("started from ImageNet weights of mobilenet-1.0: "
                                         "/c/mobilenet1.0-efbb2ca3.params (sha256 1acbb0f7a7cf...)")
    invoked = s.invoke(*cases[6][1:])
    assert invoked[:3] == ["no detection reaches score 0.5", "best score 0.32 (RBC) of 3 detections",
                           "hint: try --threshold 0.27"]


def test_the_registry_summaries_say_what_moved_and_what_to_type_next() -> None:
    from argparse import Namespace

    from include import cli_summaries as s

    decision = {"promote": True, "reason": "test mAP 0.61 meets the threshold 0.50", "version": 3,
                "registered_model": "object_detection_pipeline"}
    lines = s.run(Namespace(), {"promotion": decision, "approval": {"pending": True, "version": 3}})
    assert lines[1] == "version 3 of object_detection_pipeline waits for approval; nothing was deployed"
    assert s.tracking(Namespace(action="status"), {"running": False, "folder": "data/mlflow"})[-1] == (
        "next: detection-pipeline tracking up")
    parser = build_parser()
    for line in (lines[-1], "next: detection-pipeline tracking up"):
        (command,) = _next_commands([line])
        parser.parse_args(command)
    listed = {"registered_model": "m", "tracking_uri": "http://127.0.0.1:5000", "notes": ["alias 'previous' is gone"],
              "versions": [{"version": 2, "aliases": ["champion"], "map": 0.61, "split": "test", "coco_map": None,
                            "approval": "approved", "created": "2026-12-04T12:20:55+00:00", "airflow_run_id": "r2"}]}
    table = s.models(Namespace(), listed)
    assert table[1].split() == ["version", "aliases", "mAP", "split", "COCO", "approval", "created", "airflow", "run"]
    assert table[2].split() == ["2", "champion", "0.6100", "test", "-", "approved", "2026-12-04T12:20:55+00:00", "r2"]
    assert table[3] == "note: alias 'previous' is gone"
    assert s.promote(Namespace(), {"version": 3, "replaced": 2}) == ["version 3 is the champion; version 2 is previous"]
    assert s.rollback(Namespace(), {"champion": 2, "replaced": 3}) == [
        "version 2 is the champion again; version 3 is previous"]


def test_invoke_counts_detections_per_class_name() -> None:
    from include.endpoints.invocation import detection_summary

    prediction = [[1, 0.9, 0, 0, 1, 1], [1, 0.6, 0, 0, 1, 1], [0, 0.55, 0, 0, 1, 1], [2, 0.2, 0, 0, 1, 1]]
    summary = detection_summary(prediction, {0: "Platelets", 1: "RBC"}, 0.5)
    assert summary == {"threshold": 0.5, "detections": 4, "per_class": {"RBC": 2, "Platelets": 1},
                       "best": {"class": "RBC", "score": 0.9}}
    assert detection_summary([], None, 0.5)["best"] is None


def test_endpoints_and_sweep_list_what_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DETECTION__LOCAL__ENDPOINT_STATE_DIR", str(tmp_path))
    assert main(["endpoints"]) == 0 and capsys.readouterr().err == "no endpoints\n"
    assert main(["--json", "sweep", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"local": []} and "would remove nothing" in captured.err


def test_export_model_writes_the_onnx_export_and_says_how_it_compares(
    spread_artifact: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.shared_data import BCCD_IMAGES

    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sorted(BCCD_IMAGES.glob("*.jpg"))[:3]:
        (photos / path.name).write_bytes(path.read_bytes())
    args = ["export-model", "--input", spread_artifact, "--output", str(tmp_path / "export"), "--format", "onnx"]
    assert main(["--json", *args, "--images", str(photos)]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["parity_passed"] is True and summary["parity_images"] == 3
    assert (tmp_path / "export" / "onnx" / "model.onnx").is_file() and (tmp_path / "export" / "export.json").is_file()
    assert "onnx: file://" in captured.err
    assert "parity: onnxruntime vs mxnet on 3 images: detections equal" in captured.err
    # without images to check parity on, it says where to give them
    assert main(args) == 1
    assert "records no data folder: give --data (a RecordIO build) or --images" in capsys.readouterr().err


def test_release_and_endpoint_rollback_say_what_is_missing(tmp_path: Path, monkeypatch, capsys) -> None:
    """CLI -> stage -> production endpoint: nothing released yet, so nothing to roll back or to show."""
    monkeypatch.setenv("DETECTION__STORAGE__BASE_URI", str(tmp_path / "storage"))
    monkeypatch.setenv("DETECTION__LOCAL__ENDPOINT_STATE_DIR", str(tmp_path / "endpoints"))
    assert main(["rollback", "--endpoint", "detector-prod"]) == 1
    assert "endpoint detector-prod has 0 release(s) in its history: nothing to roll back to" in capsys.readouterr().err
    assert main(["release", "--model", str(tmp_path / "m.tar.gz"), "--version", "2"]) == 1
    assert "give --version (a registry version) or --model (an archive), not both" in capsys.readouterr().err
    assert main(["release", "--model", str(tmp_path / "m.tar.gz"), "--smoke-images", str(tmp_path)]) == 1
    assert "holds no .jpg/.jpeg/.png images" in capsys.readouterr().err
    assert main(["--json", "production"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == {"endpoint_name": "detector-prod", "backend": "local", "endpoint": None, "history": []}


# --- batch transform and pre-labels ---------------------------------------------------------------------------


def test_transform_then_prelabel_from_the_command_line(
    spread_artifact: str, tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """CLI -> stage -> execute -> local executor; the summaries' next commands are accepted by the CLI."""
    from tests.transform.conftest import CORRUPT, GOOD, make_photo_folder

    monkeypatch.setenv("DETECTION__STORAGE__BASE_URI", str(tmp_path / "storage"))
    photos, out = make_photo_folder(tmp_path / "unlabelled"), tmp_path / "scored"
    args = ["transform", "--model", spread_artifact, "--input", str(photos), "--output", str(out), "--workers", "1"]
    assert main(args) == 0
    lines = capsys.readouterr().err.splitlines()
    assert f"{len(GOOD)} of {len(GOOD) + 1} images scored into file://{out} (<image>.out), 1 error records" in lines[-3]
    assert lines[-2] == f"  could not score {CORRUPT}"
    assert lines[-1] == f"next: detection-pipeline prelabel --transform {out} --output {tmp_path}/prelabels " \
                        "--score-threshold 0.5"  # fmt: skip
    build_parser().parse_args(_next_commands(lines)[0])

    assert main([*_next_commands(lines)[0], "--format", "coco", "--format", "labelstudio"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert re.fullmatch(rf"\d+ boxes at score >= 0.5 on {len(GOOD)} images \(0 without one; 1 inputs with errors "
                        r"left out\)", lines[0]), lines[0]  # fmt: skip
    assert (tmp_path / "prelabels" / "coco" / "instances.json").is_file()
    assert not (tmp_path / "prelabels" / "groundtruth").exists()
    build_parser().parse_args(_next_commands(lines)[0])

    assert main(["transform", "--model", spread_artifact, "--input", str(photos), "--output", str(photos / "o")]) == 1
    assert "is inside the input" in capsys.readouterr().err
    assert main(["prelabel", "--transform", str(photos), "--output", str(tmp_path / "p")]) == 1
    assert f"{photos}/transform.json does not exist: file://{photos} is not a transform's output folder" in (
        capsys.readouterr().err)  # fmt: skip
