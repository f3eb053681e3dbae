"""Fixtures of the ingest, quality-gate and RecordIO tests: small canonical tables written to tmp_path.

Their S3 fixtures are the root conftest's ``s3_bucket``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.recordio_data import BCCD, Dataset, bccd_rows, synthetic_images, write_dataset

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")


@pytest.fixture
def synthetic(tmp_path: Path) -> Dataset:
    root = tmp_path / "data"
    return write_dataset(root, tmp_path / "table", synthetic_images(root), {0: "bird", 1: "cat"})


@pytest.fixture
def bccd(tmp_path: Path) -> Dataset:
    rows = bccd_rows([f"BloodImage_{i:05d}" for i in (0, 1, 2, 3)], "train")
    rows += bccd_rows([f"BloodImage_{i:05d}" for i in (4, 5)], "validation")
    return write_dataset(BCCD, tmp_path / "table", rows, {0: "RBC", 1: "WBC", 2: "Platelets"})
