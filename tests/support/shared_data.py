"""The read-only ``../shared`` folder beside the project (there in CI too) and its BCCD data set."""

from __future__ import annotations

from include.project import PROJECT_ROOT

SHARED = PROJECT_ROOT.parent / "shared"
BCCD = SHARED / "datasets" / "bccd" / "BCCD"
BCCD_IMAGES = BCCD / "JPEGImages"
