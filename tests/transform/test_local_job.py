"""The local executor of CreateTransformJob on a folder of real photographs: one .out per image (paths kept), one
error record for the corrupt file, a DescribeTransformJob-shaped transform.json, and answers equal to a running
local endpoint's for the same images."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from urllib.parse import urlparse

import pytest

from include import storage
from include.execution import TRANSFORM, execute
from include.run_layout import TRANSFORM_ERROR_SUFFIX, TRANSFORM_JSON, TRANSFORM_OUTPUT_SUFFIX
from include.serving.contract import content_type_for
from include.transform.local_job import ModelLoadError, TransformFailedError
from include.transform.outputs import read_output
from tests.transform.conftest import CORRUPT, GOOD, local_transform_request


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_one_out_per_image_and_one_error_record(bccd_transform: dict) -> None:
    output, result = bccd_transform["output"], bccd_transform["result"]
    assert _files(output) == {f"{n}{TRANSFORM_OUTPUT_SUFFIX}" for n in GOOD} | {
        f"{CORRUPT}{TRANSFORM_ERROR_SUFFIX}",
        TRANSFORM_JSON,
    }
    assert result["status"] == "Completed" and result["counts"] == {"inputs": 7, "outputs": 6, "errors": 1}
    error = json.loads((output / f"{CORRUPT}{TRANSFORM_ERROR_SUFFIX}").read_text())
    assert error["type"] == "ValueError" and error["input"].endswith(f"/unlabelled/{CORRUPT}")
    assert "not a decodable JPEG or PNG image" in error["error"]
    record = json.loads((output / TRANSFORM_JSON).read_text())
    assert record["TransformJobStatus"] == "Completed" and record["Backend"] == "local" and record["Workers"] == 2
    assert record["ErrorRecords"] == [f"{CORRUPT}{TRANSFORM_ERROR_SUFFIX}"] and "Tags" not in record
    assert record["TransformInput"]["SplitType"] == "None" and record["TransformEndTime"] >= record["CreationTime"]
    scored = read_output(str(output))
    assert set(scored.answers) == set(GOOD) and set(scored.errors) == {CORRUPT}
    assert all(len(rows) > 0 for rows in scored.answers.values())


def _invoke(url: str, body: bytes) -> bytes:
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": content_type_for(body)})
        response = conn.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def spread_endpoint(spread_artifact: str, tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]):
    """A local endpoint serving the transform's model."""
    from include.endpoints.local import start_endpoint, stop_endpoint

    state_dir = tmp_path_factory.mktemp("transform-endpoint")
    state = start_endpoint(spread_artifact, "transform-check", state_dir, ready_timeout_s=180, env=server_env)
    yield state
    stop_endpoint("transform-check", state_dir)


def test_every_out_equals_the_endpoints_answer_for_the_image(bccd_transform: dict, spread_endpoint: dict) -> None:
    folder, output = bccd_transform["input"], bccd_transform["output"]
    for name in GOOD:
        answered = _invoke(spread_endpoint["url"], (folder / name).read_bytes())
        written = (output / f"{name}{TRANSFORM_OUTPUT_SUFFIX}").read_bytes()
        assert written == answered, name  # byte for byte: both run MXNet on one thread here
        assert sum(score >= 0.5 for _, score, *_ in json.loads(written)["prediction"]) > 0, "scores spread"


def test_a_rerun_in_one_process_gives_the_same_answers_and_removes_stale_outputs(
    bccd_transform: dict, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in GOOD[:2]:
        (folder / name).write_bytes((bccd_transform["input"] / name).read_bytes())
    output = tmp_path / "out"
    (output / "gone.jpg.out").parent.mkdir()
    (output / "gone.jpg.out").write_text("{}")  # an earlier transform's answer for an image no longer there
    (output / "notes.txt").write_text("kept")
    request = local_transform_request(bccd_transform["model"], storage.normalize(folder), storage.normalize(output))
    result = execute(TRANSFORM, request, backend="local", local_options={"workers": 1})
    assert result["counts"] == {"inputs": 2, "outputs": 2, "errors": 0}
    assert _files(output) == {f"{n}{TRANSFORM_OUTPUT_SUFFIX}" for n in GOOD[:2]} | {TRANSFORM_JSON, "notes.txt"}
    for name in GOOD[:2]:
        assert (output / f"{name}.out").read_text() == (bccd_transform["output"] / f"{name}.out").read_text()


def test_bad_inputs_and_outputs_are_refused_with_their_names(bccd_transform: dict, tmp_path: Path) -> None:
    model, folder = bccd_transform["model"], tmp_path / "in"
    folder.mkdir()
    request = local_transform_request(model, storage.normalize(folder), storage.normalize(tmp_path / "out"))
    with pytest.raises(ValueError, match=f"{folder} holds no files to score"):
        execute(TRANSFORM, request, backend="local")
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(TransformFailedError, match="none of the 1 inputs could be scored"):
        execute(TRANSFORM, request, backend="local", local_options={"workers": 1})
    inside = local_transform_request(model, storage.normalize(folder), storage.normalize(folder / "out"))
    with pytest.raises(ValueError, match="is inside the input"):
        execute(TRANSFORM, inside, backend="local")
    missing = local_transform_request(storage.normalize(tmp_path / "none.tar.gz"), storage.normalize(folder),
                                      storage.normalize(tmp_path / "out"))  # fmt: skip
    with pytest.raises(FileNotFoundError, match="none.tar.gz"):
        execute(TRANSFORM, missing, backend="local")
    (folder / "cells.jpg").write_bytes((bccd_transform["input"] / GOOD[0]).read_bytes())
    (tmp_path / "broken.tar.gz").write_text("not an archive")
    broken = local_transform_request(storage.normalize(tmp_path / "broken.tar.gz"), storage.normalize(folder),
                                     storage.normalize(tmp_path / "out"))  # fmt: skip
    with pytest.raises(ModelLoadError, match="the model could not be loaded: .*broken.tar.gz"):
        execute(TRANSFORM, broken, backend="local", local_options={"workers": 1})
