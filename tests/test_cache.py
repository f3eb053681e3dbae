"""The step cache's store: complete entries only, hits put the files under the new run, deleted files are a miss."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from include import cache, storage
from include.cache import ENTRY_FILE, MARKER_FILE, Outcome, StepCache, cache_key, read_marker


def _outputs(root: Path) -> dict[str, str]:
    (root / "train").mkdir(parents=True)
    (root / "train" / "train.rec").write_bytes(b"records" * 100)
    (root / "recordio.json").write_text(json.dumps({"output_uri": storage.normalize(root), "n": 3}))
    return {"output_uri": storage.normalize(root), "summary_uri": storage.normalize(root / "recordio.json")}


def test_a_key_is_the_content_not_its_order_or_framing() -> None:
    assert cache_key("recordio", {"a": 1, "b": [1, 2]}) == cache_key("recordio", {"b": [1, 2], "a": 1})
    assert cache_key("recordio", {"a": 1}) != cache_key("training", {"a": 1})
    assert cache_key("recordio", {"a": 1}) != cache_key("recordio", {"a": 2})


def test_a_hit_links_the_files_under_the_new_run_and_moves_the_result_there(tmp_path: Path) -> None:
    first, second = tmp_path / "runs" / "r1" / "recordio", tmp_path / "runs" / "r2" / "recordio"
    result = _outputs(first)
    store = StepCache(storage.normalize(tmp_path / "cache"), "recordio", "dag", "r1")
    store.store("k" * 64, storage.normalize(first), result)

    outcome, reused = StepCache(storage.normalize(tmp_path / "cache"), "recordio", "dag", "r2").reuse(
        "k" * 64, storage.normalize(second)
    )
    assert outcome.hit and outcome.source_run_id == "r1" and outcome.files == 2 and outcome.bytes > 700
    assert reused is not None and reused["output_uri"] == storage.normalize(second)
    assert reused["summary_uri"] == storage.normalize(second / "recordio.json")
    assert reused["cache"]["hit"] is True
    rec = second / "train" / "train.rec"
    assert rec.read_bytes() == (first / "train" / "train.rec").read_bytes()
    assert os.stat(rec).st_ino == os.stat(first / "train" / "train.rec").st_ino  # a hard link: no copy
    # the JSON record names the run it now belongs to
    assert json.loads((second / "recordio.json").read_text())["output_uri"] == storage.normalize(second)
    marker = read_marker(storage.normalize(second))
    assert marker is not None and marker["hit"] and marker["result"]["output_uri"] == storage.normalize(second)
    assert outcome.message().startswith(f"cache hit: recordio {'k' * 12} from run r1 (2 files")


def test_an_entry_without_its_completion_record_is_no_entry(tmp_path: Path) -> None:
    root = tmp_path / "run" / "recordio"
    store = StepCache(storage.normalize(tmp_path / "cache"), "recordio", "dag", "r1")
    store.store("a" * 64, storage.normalize(root), _outputs(root))
    (Path(storage.local_path(store.entry_uri("a" * 64))) / ENTRY_FILE).unlink()  # as a step killed mid-record

    outcome, reused = store.reuse("a" * 64, storage.normalize(tmp_path / "next"))
    assert reused is None and not outcome.hit and outcome.reason == "no entry"


def test_deleted_files_are_a_miss_and_the_entry_goes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "run" / "recordio"
    store = StepCache(storage.normalize(tmp_path / "cache"), "recordio", "dag", "r1")
    store.store("b" * 64, storage.normalize(root), _outputs(root))
    entry = storage.local_path(store.entry_uri("b" * 64))
    (entry / "files" / "train" / "train.rec").unlink()

    outcome, reused = store.reuse("b" * 64, storage.normalize(tmp_path / "next"))
    assert reused is None and not outcome.hit
    assert outcome.reason == "the entry points at deleted files (train/train.rec)"
    assert not entry.exists()
    assert "points at deleted files (train/train.rec)" in caplog.text


def test_a_fresh_run_skips_the_lookup_but_still_records(tmp_path: Path) -> None:
    root = tmp_path / "run" / "recordio"
    uri = storage.normalize(tmp_path / "cache")
    StepCache(uri, "recordio", "dag", "r1").store("c" * 64, storage.normalize(root), _outputs(root))
    fresh = StepCache(uri, "recordio", "dag", "r2", lookup=False)

    outcome, reused = fresh.reuse("c" * 64, storage.normalize(tmp_path / "r2"))
    assert reused is None and "use_cache=false" in outcome.reason
    assert read_marker(storage.normalize(tmp_path / "r2"))["hit"] is False  # type: ignore[index]


def test_listeners_hear_every_outcome_and_a_failing_one_is_only_logged(tmp_path: Path) -> None:
    heard: list[Outcome] = []

    def broken(outcome: Outcome) -> None:
        raise RuntimeError("tracking is down")

    cache.add_listener(heard.append)
    cache.add_listener(broken)
    try:
        StepCache(storage.normalize(tmp_path / "cache"), "training", "dag", "r1").reuse("d" * 64, str(tmp_path / "t"))
    finally:
        cache.remove_listener(heard.append)
        cache.remove_listener(broken)
    assert [(o.step, o.hit) for o in heard] == [("training", False)]
    assert (tmp_path / "t" / MARKER_FILE).exists()


def test_entries_on_s3_are_server_side_copies(s3_bucket: str, tmp_path: Path) -> None:
    root = f"s3://{s3_bucket}/runs/r1/recordio"
    storage.write_bytes(f"{root}/train/train.rec", b"x" * 2048)
    store = StepCache(f"s3://{s3_bucket}/_cache", "recordio", "dag", "r1")
    store.store("e" * 64, root, {"output_uri": root})

    outcome, reused = StepCache(f"s3://{s3_bucket}/_cache", "recordio", "dag", "r2").reuse(
        "e" * 64, f"s3://{s3_bucket}/runs/r2/recordio"
    )
    assert outcome.hit and reused is not None and reused["output_uri"] == f"s3://{s3_bucket}/runs/r2/recordio"
    assert storage.read_bytes(f"s3://{s3_bucket}/runs/r2/recordio/train/train.rec") == b"x" * 2048
