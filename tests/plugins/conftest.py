"""Every test here talks to (moto's) AWS: fake credentials and region, no endpoint URL, no profile."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fake_aws(aws_credentials: None) -> None:
    """Nothing here may reach real AWS."""
