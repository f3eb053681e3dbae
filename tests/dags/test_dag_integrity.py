"""DAG integrity: every DAG file imports cleanly, fast, without heavy modules, with the metadata CI checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
HEAVY = ("mxnet", "gluoncv", "great_expectations", "cv2", "pandas", "sagemaker", "mlflow")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert "object_detection_pipeline" in dagbag.dags


def test_dags_have_required_metadata(dagbag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.description, f"{dag_id} has no description"
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.params, f"{dag_id} has no params"
        for name in dag.params.keys():
            schema = dag.params.get_param(name).schema
            assert "type" in schema or "enum" in schema, f"{dag_id} param {name} has no schema type"
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id} has no owner"
            if not task.is_teardown:
                assert task.retries >= 1 or task.task_id in _NO_RETRY, f"{dag_id}.{task.task_id} retries < 1"


# A config error or a failed run is not transient: these tasks fail at once on purpose; a second try of
# the approval would ask the person again after they answered; a second release would release again.
_NO_RETRY = {"resolve_config", "watcher", "approve", "release"}


def test_no_cycles(dagbag) -> None:
    from airflow.utils.dag_cycle_tester import check_cycle

    for dag in dagbag.dags.values():
        check_cycle(dag)


def test_pipeline_params_form(dagbag) -> None:
    params = dagbag.dags["object_detection_pipeline"].params
    expected = {"backend", "dataset_source", "dataset_format", "classes", "epochs", "tune", "deploy",
                "keep_endpoint_minutes", "delete_intermediate_files", "export", "deploy_runtime", "approval"}
    assert expected <= set(params.keys())
    assert params.get_param("backend").schema["enum"] == ["local", "sagemaker"]
    assert params.get_param("export").schema["type"] == "boolean" and params["export"] is False
    assert params.get_param("deploy_runtime").schema["enum"] == ["mxnet", "onnxruntime"]
    assert params.get_param("approval").schema["enum"] == ["auto", "manual"]


def test_export_runs_between_evaluation_and_the_promotion_gate(dagbag) -> None:
    dag = dagbag.dags["object_detection_pipeline"]
    export = dag.get_task("export")
    assert export.upstream_task_ids == {"resolve_config", "evaluate"}
    assert export.downstream_task_ids == {"promotion_gate", "watcher", "close_tracking"}
    assert dag.get_task("promotion_gate").trigger_rule == "none_failed_min_one_success"  # runs when export is skipped


def test_dataset_formats_are_the_readers_everywhere(dagbag) -> None:
    """The DAG param, the configuration and the CLI offer every reader's format and auto (detection)."""
    from typing import get_args

    from include.cli import build_parser
    from include.configs.schema import DatasetFormat
    from include.preprocess.readers import AUTO, FORMATS

    formats = {AUTO, *FORMATS}
    param = dagbag.dags["object_detection_pipeline"].params.get_param("dataset_format")
    assert set(param.schema["enum"]) == formats and param.value == AUTO
    assert set(get_args(DatasetFormat)) == formats
    args = build_parser().parse_args(["ingest", "--source", "s", "--output", "o"])
    assert args.format == AUTO


def test_approval_waits_between_the_gate_and_the_deploy_and_tracking_closes_last(dagbag) -> None:
    dag = dagbag.dags["object_detection_pipeline"]
    assert dag.get_task("promotion_gate").downstream_task_ids == {"approve", "watcher"}
    assert dag.get_task("approve").downstream_task_ids == {"deploy", "watcher"}
    close = dag.get_task("close_tracking")
    assert close.trigger_rule == "all_done"
    # a branch skips its direct downstream whatever their trigger rule: closing must not be one of them,
    # and still comes after the gate and the approval (through smoke_test and teardown)
    assert {"teardown", "smoke_test", "train", "tune", "validate"} <= close.upstream_task_ids
    assert not {"promotion_gate", "approve"} & close.upstream_task_ids
    assert {"promotion_gate", "approve"} <= {t.task_id for t in close.get_flat_relatives(upstream=True)}


_PARSE = """
import importlib.util, json, sys, time
import airflow.sdk  # the DAG processor has Airflow loaded already; time the DAG file itself
before = set(sys.modules)
start = time.process_time()  # CPU time: what parsing costs, whatever else the shared machine is doing
spec = importlib.util.spec_from_file_location("dagfile", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
elapsed = time.process_time() - start
print(json.dumps({"seconds": elapsed, "modules": sorted(set(sys.modules) - before)}))
"""


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=[f.name for f in DAG_FILES])
def test_dag_file_parses_fast_without_heavy_imports(dag_file: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PARSE, str(dag_file)], capture_output=True, text=True, check=True, cwd=ROOT
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["seconds"] < 1.0, f"{dag_file.name} took {result['seconds']:.2f} s to parse"
    loaded = {m.split(".")[0] for m in result["modules"]}
    assert not loaded & set(HEAVY), f"{dag_file.name} imports {sorted(loaded & set(HEAVY))} at parse time"


def test_ruff_airflow3_rules_clean() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    out = subprocess.run(
        [str(ruff), "check", "--select", "AIR3", "--no-cache", "dags", "plugins", "include"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_pipeline_is_scheduled_on_the_labelled_dataset_asset_or_cron(monkeypatch) -> None:
    import importlib.util

    from airflow.sdk import Asset, AssetOrTimeSchedule

    def load(cron: str | None):
        if cron:
            monkeypatch.setenv("DETECTION_SCHEDULE_CRON", cron)
        else:
            monkeypatch.delenv("DETECTION_SCHEDULE_CRON", raising=False)
        spec = importlib.util.spec_from_file_location("pipeline_dag", ROOT / "dags" / "object_detection_pipeline.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    by_asset = load(None)
    assert by_asset.SCHEDULE == Asset(name="labelled_dataset", uri="detection://labelled-dataset")
    by_both = load("0 6 * * *")
    assert isinstance(by_both.SCHEDULE, AssetOrTimeSchedule)
    assert by_both.SCHEDULE.timetable.expression == "0 6 * * *"


def test_model_release_is_triggered_by_hand_and_verifies_after_releasing(dagbag) -> None:
    dag = dagbag.dags["model_release"]
    assert type(dag.timetable).__name__ == "NullTimetable"  # manual trigger only
    assert dag.get_task("release").downstream_task_ids == {"verify"}
    params = dag.params.dump()
    assert params["action"] == "rollout" and params["model_version"] is None and params["endpoint_name"] is None
    assert set(params) == {"action", "model_version", "endpoint_name", "backend", "smoke_images", "reason"}
