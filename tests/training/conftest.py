"""Fixtures of the training tests: a tiny synthetic RecordIO data set and one real local training job."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.synthetic_shapes import write_shapes_recordio
from tests.support.tiny_jobs import make_request

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train/`` (12 images + mirrored copies), ``validation/`` (6 images), ``classes.json``; 96x96 px."""
    root = tmp_path_factory.mktemp("tiny-recordio")
    write_shapes_recordio(root, 12, 6, size=(96, 96), num_classes=3, max_objects=3, seed=3)
    return root


@pytest.fixture(scope="session")
def trained(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The training.json record of one local training job (two epochs on the tiny set)."""
    from include.training.local_executor import run_training_job

    output = tmp_path_factory.mktemp("trained")
    return run_training_job(make_request(tiny_data, output, "tiny-train"))
