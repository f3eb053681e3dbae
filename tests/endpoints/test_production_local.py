"""The local production endpoint: rollouts and a rollback under load fail no request; a failed smoke test changes
nothing; captured invocations decode to the exact request bytes; the sweeper and unnamed teardowns leave it alone."""

from __future__ import annotations

import json
import tarfile
import time

import pytest

from include.configs import load_config
from include.endpoints import production
from include.endpoints.capture import payload_bytes, read_records
from include.endpoints.lifecycle import sweep, teardown_endpoints, teardown_run
from include.endpoints.local import list_endpoints, state_dir
from include.endpoints.processes import port_is_free
from include.endpoints.production_local import ProductionSwitchError
from tests.support.client_loop import ClientLoop, allowed_models, percentile, runtime_client
from tests.support.serving_fixtures import build_artifact
from tests.support.shared_data import BCCD_IMAGES

pytestmark = pytest.mark.slow

NAME = "prod"


@pytest.fixture(scope="module")
def other_artifact(tmp_path_factory) -> str:
    """A second model: other random weights and one class, so its answers differ from the first's."""
    return build_artifact(tmp_path_factory.mktemp("other") / "model.tar.gz", classes={0: "cell"})


@pytest.fixture(scope="module")
def mislabelled_artifact(artifact, tmp_path_factory) -> str:
    """The first model with a classes.json of one class: it starts and answers, but fails the smoke test's schema."""
    folder = tmp_path_factory.mktemp("mislabelled")
    with tarfile.open(artifact.removeprefix("file://")) as archive:
        archive.extractall(folder / "files", filter="data")
    (folder / "files" / "classes.json").write_text(json.dumps({"0": "RBC"}))
    target = folder / "model.tar.gz"
    with tarfile.open(target, "w:gz") as archive:
        for path in sorted((folder / "files").iterdir()):
            archive.add(path, arcname=path.name)
    return str(target)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("production")
    return load_config(overrides={
        "storage": {"base_uri": str(root / "storage")},
        "local": {"endpoint_state_dir": str(root / "endpoints")},
        "deploy": {"capture": {"enabled": True, "percent": 100}, "smoke_images": 2},
    })  # fmt: skip


@pytest.fixture(scope="module")
def served(cfg, artifact, server_env):
    """The production endpoint, created serving the first model as registry version 1."""
    first = production.release(
        cfg, production.Release(artifact, 1), name=NAME, by="test", reason="create",
        smoke_images=str(BCCD_IMAGES), port=0, env=server_env,
    )  # fmt: skip
    yield first
    teardown_endpoints(cfg, NAME)


def _release(cfg, uri, version, env):
    return production.release(cfg, production.Release(uri, version), name=NAME, by="test", reason=f"v{version}",
                              smoke_images=str(BCCD_IMAGES), port=0, env=env)  # fmt: skip


def test_two_rollouts_and_a_rollback_under_load_fail_no_request(
    cfg, served, artifact, other_artifact, server_env, jpeg_bytes, capsys
):
    assert served["created"] and served["generation"] == 1
    switches = []
    with ClientLoop(served["url"], NAME, jpeg_bytes, threads=4) as loop:
        time.sleep(2)
        for uri, version in ((other_artifact, 2), (artifact, 3)):
            started = time.monotonic()
            outcome = _release(cfg, uri, version, server_env)
            switches.append((started, time.monotonic(), f"v{version}"))
            assert outcome["url"] == served["url"] and outcome["release"]["action"] == "rollout"
            time.sleep(2)
        started = time.monotonic()
        back = production.rollback(cfg, name=NAME, by="test", reason="v3 misbehaves", smoke_images=str(BCCD_IMAGES),
                                   env=server_env)  # fmt: skip
        switches.append((started, time.monotonic(), "v2"))
        time.sleep(2)
    calls = loop.calls
    assert back["release"]["action"] == "rollback" and back["release"]["model_id"] == "v2"

    failed = [c for c in calls if c.error]
    assert not failed, f"{len(failed)} of {len(calls)} requests failed, e.g. {failed[:3]}"
    wrong = [c for c in calls if c.model not in allowed_models(c, "v1", switches)]
    assert not wrong, f"{len(wrong)} answers from a model not serving at the time, e.g. {wrong[:3]}"
    assert {c.model for c in calls} == {"v1", "v2", "v3"}
    # which model answered is what its answer says, not only its header: v1 and v3 are one artifact, v2 another
    answers = {model: {c.answer for c in calls if c.model == model} for model in ("v1", "v2", "v3")}
    assert all(len(a) == 1 for a in answers.values()), answers
    assert answers["v1"] == answers["v3"] != answers["v2"]

    during = [c.ms for c in calls if any(c.started <= end and c.ended >= start for start, end, _ in switches)]
    with capsys.disabled():
        print(f"\n{len(calls)} requests, 0 failed; p50 {percentile([c.ms for c in calls], 50):.0f} ms, "
              f"p99 {percentile([c.ms for c in calls], 99):.0f} ms; during the switches (n={len(during)}) "
              f"p50 {percentile(during, 50):.0f} ms, p99 {percentile(during, 99):.0f} ms")  # fmt: skip

    history = production.history(cfg, NAME)
    assert [(e["action"], e["model_id"]) for e in history] == [
        ("create", "v1"), ("rollout", "v2"), ("rollout", "v3"), ("rollback", "v2")]  # fmt: skip
    old_servers = [s["name"] for s in list_endpoints(state_dir(cfg))]
    assert sorted(old_servers) == [NAME, f"{NAME}--g4"], "the replaced model servers are stopped"

    # every answered request was captured, the SageMaker way, and decodes to the exact bytes sent
    status = production.describe(cfg, NAME)["endpoint"]["router"]["capture"]
    deadline = time.monotonic() + 30
    while status["written"] < len(calls) and time.monotonic() < deadline:
        time.sleep(0.2)
        status = production.describe(cfg, NAME)["endpoint"]["router"]["capture"]
    records = list(read_records(status["prefix"]))
    assert len(records) == len(calls) == status["written"]
    assert all(payload_bytes(r["captureData"]["endpointInput"]) == jpeg_bytes for r in records)
    assert all(r["captureData"]["endpointOutput"]["encoding"] == "JSON" for r in records)


def test_a_model_failing_its_smoke_test_leaves_the_old_one_serving(cfg, served, mislabelled_artifact, server_env,
                                                                   jpeg_bytes):  # fmt: skip
    client = runtime_client(served["url"])
    before = client.invoke_endpoint(EndpointName=NAME, ContentType="image/jpeg", Body=jpeg_bytes)
    serving = before["ResponseMetadata"]["HTTPHeaders"]["x-detection-model"]
    history = production.history(cfg, NAME)
    names = [s["name"] for s in list_endpoints(state_dir(cfg))]
    with pytest.raises(ProductionSwitchError, match=r"failed its smoke test.*serves as before.*num_classes=1"):
        _release(cfg, mislabelled_artifact, 9, server_env)
    after = client.invoke_endpoint(EndpointName=NAME, ContentType="image/jpeg", Body=jpeg_bytes)
    assert after["ResponseMetadata"]["HTTPHeaders"]["x-detection-model"] == serving
    assert production.history(cfg, NAME) == history
    assert sorted(s["name"] for s in list_endpoints(state_dir(cfg))) == sorted(names), "the failed server is stopped"


def test_the_sweeper_and_unnamed_teardowns_leave_production_alone_until_it_is_named(cfg, served, jpeg_bytes):
    assert sweep(cfg)["local"] == []
    assert teardown_endpoints(cfg)["stopped"] == []
    teardown_run(cfg, "object_detection_pipeline", "any run", keep_unexpired=False)
    client = runtime_client(served["url"])
    assert client.invoke_endpoint(EndpointName=NAME, ContentType="image/jpeg", Body=jpeg_bytes)["Body"].read()

    removed = teardown_endpoints(cfg, NAME)["stopped"]
    assert [s["name"] for s in removed][0] == NAME and len(removed) == 2
    assert all(s["result"] == "terminated" and s["port_free"] for s in removed)
    assert list_endpoints(state_dir(cfg)) == []
    assert port_is_free("127.0.0.1", int(served["url"].rsplit(":", 1)[1]))
    assert production.history(cfg, NAME), "what served when outlives the endpoint"
