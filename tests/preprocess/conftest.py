"""Settings of the ingest and quality-gate tests (their S3 fixtures are the root conftest's s3_bucket)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
