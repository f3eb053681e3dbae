"""The read-only ``../shared`` folder beside the project (there in CI too) and its BCCD data set."""

from __future__ import annotations

from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
BCCD = SHARED / "datasets" / "bccd" / "BCCD"
BCCD_IMAGES = BCCD / "JPEGImages"
