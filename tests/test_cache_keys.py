"""The steps' cache keys through the stages: content decides, run ids and paths do not."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from include import stages, storage
from include.cache import cache_key, read_marker
from include.cache_keys import training_key_parts
from include.configs import load_config
from include.run_layout import RunLayout
from include.sagemaker.naming import RunIdentity
from tests.support.recordio_data import Dataset, synthetic_images, write_dataset

DAG = "object_detection_pipeline"


def _context(base: Path, run_id: str, **overrides: Any) -> stages.RunContext:
    sections = {"storage": {"base_uri": str(base)}, "recordio": {"shards": 2, "workers": 1, "resize": 32}}
    for key, value in overrides.items():
        sections.setdefault(key, {}).update(value)
    cfg = load_config(overrides={"backend": "local", **sections})
    return stages.RunContext(cfg, RunLayout.create(str(base), DAG, run_id), DAG, run_id)


def _gated_table(ctx: stages.RunContext, images: Path, change_box: bool = False) -> Dataset:
    rows = synthetic_images(images)
    if change_box:
        rows[0]["xmax"] -= 3
    return write_dataset(images, storage.local_path(ctx.layout.quality), rows, {0: "bird", 1: "cat"})


def test_recordio_second_run_on_the_same_table_is_a_hit(tmp_path: Path) -> None:
    images = tmp_path / "images"
    first = _context(tmp_path / "runs", "run-1")
    _gated_table(first, images)
    built = stages.build_recordio(first)
    assert built["cache"]["hit"] is False

    second = _context(tmp_path / "runs", "run-2", recordio={"shards": 3})  # shard count does not change the bytes
    shutil.copytree(storage.local_path(first.layout.quality), storage.local_path(second.layout.quality))
    reused = stages.build_recordio(second)
    assert reused["cache"]["hit"] is True and reused["cache"]["source_run_id"] == "run-1"
    assert reused["records"] == built["records"]
    assert reused["output_uri"] == storage.normalize(second.layout.recordio)
    for split in ("train", "validation"):
        old = storage.local_path(first.layout.recordio) / split / f"{split}.rec"
        new = storage.local_path(second.layout.recordio) / split / f"{split}.rec"
        assert new.read_bytes() == old.read_bytes()
    assert not (storage.local_path(second.layout.recordio) / "_shards").exists()

    changed = _context(tmp_path / "runs", "run-3")
    _gated_table(changed, tmp_path / "images-3", change_box=True)  # the same images, one box 3 px narrower
    assert stages.build_recordio(changed)["cache"]["hit"] is False


def test_recordio_cache_off_neither_looks_up_nor_records(tmp_path: Path) -> None:
    ctx = _context(tmp_path / "runs", "run-1", recordio={"cache": False})
    _gated_table(ctx, tmp_path / "images")
    assert "cache" not in stages.build_recordio(ctx)
    assert read_marker(ctx.layout.recordio) is None and not (tmp_path / "runs" / "_cache").exists()


@pytest.fixture
def two_builds(tmp_path: Path) -> tuple[stages.RunContext, stages.RunContext]:
    """Two runs whose RecordIO builds hold the same bytes."""
    contexts = []
    for run_id in ("run-1", "run-2"):
        ctx = _context(tmp_path / "runs", run_id, recordio={"cache": False})
        _gated_table(ctx, tmp_path / "images")
        stages.build_recordio(ctx)
        contexts.append(ctx)
    return contexts[0], contexts[1]


def _training_key(ctx: stages.RunContext, **hyperparameters: Any) -> str:
    if hyperparameters:
        ctx = _context(
            Path(storage.local_path(ctx.config.storage.base_uri or "")), ctx.run_id,
            recordio={"cache": False}, training={"hyperparameters": hyperparameters},
        )  # fmt: skip
    request = stages.training_request(ctx, RunIdentity(ctx.dag_id, ctx.run_id, 1), tune=False)
    return cache_key("training", training_key_parts(request, "local", ctx.layout.recordio))


def test_training_key_is_the_request_on_the_data_not_its_names_or_paths(
    two_builds: tuple[stages.RunContext, stages.RunContext],
) -> None:
    first, second = two_builds
    r1 = stages.training_request(first, RunIdentity(DAG, first.run_id, 1), tune=False)
    r2 = stages.training_request(second, RunIdentity(DAG, second.run_id, 2), tune=False)
    assert r1["TrainingJobName"] != r2["TrainingJobName"] and r1["OutputDataConfig"] != r2["OutputDataConfig"]
    assert _training_key(first) == _training_key(second)
    assert _training_key(second, learning_rate=0.0005) != _training_key(second)


def test_training_key_follows_the_channel_bytes(two_builds: tuple[stages.RunContext, stages.RunContext]) -> None:
    first, second = two_builds
    rec = storage.local_path(second.layout.recordio) / "train" / "train.lst"
    rec.write_text(rec.read_text().replace("\t", "\t ", 1))  # no recorded checksum matches now: hashed again
    summary = storage.local_path(second.layout.recordio) / "recordio.json"
    summary.unlink()
    assert _training_key(first) != _training_key(second)
