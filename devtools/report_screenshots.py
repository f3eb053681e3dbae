"""Regenerate the docs' screenshots of ``quality.html`` from BCCD (../shared) in headless Chromium.

Ingests BCCD (Pascal VOC) and runs the quality gate under policy drop (as the README's
walk-through does) into a temporary folder, opens the report and captures three parts of it:
the verdict with the checks, the charts and sample images, and the offending boxes drawn beside
their file and line (the leaking validation image beside its training twin, the zero-area boxes).

Writes ``docs/images/quality-report-checks.png``, ``quality-report-figures.png`` and
``quality-report-findings.png``.

Usage: ``.venv/bin/python -m devtools.report_screenshots [--out docs/images]``
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from devtools import ui_browser as ui
from include.preprocess.ingest import ingest
from include.preprocess.quality.gate import validate
from include.project import PROJECT_ROOT

BCCD = PROJECT_ROOT.parent / "shared" / "datasets" / "bccd" / "BCCD"
MAX_BYTES = 600_000
#: (file, the first element's CSS selector, the element whose bottom ends the capture)
PARTS = (
    ("quality-report-checks.png", "h1", "table"),
    ("quality-report-figures.png", "h2:nth-of-type(2)", ".samples"),
    ("quality-report-findings.png", "#box_ordered", "#split_leakage ~ table"),
)
_BOX = """
const [first, last] = [document.querySelector(arguments[0]), document.querySelector(arguments[1])];
const a = first.getBoundingClientRect(), b = last.getBoundingClientRect();
return [Math.min(a.left, b.left) + scrollX, a.top + scrollY, Math.max(a.right, b.right) + scrollX, b.bottom + scrollY];
"""


def capture(out: Path, work: Path) -> list[Path]:
    ingest("voc", str(BCCD), str(work / "ingest"))
    validate(str(work / "ingest"), str(work / "quality"), policy="drop", base_network="mobilenet-1.0", image_shape=256)
    shots = []
    with ui.chromium(1280, 900) as driver:
        driver.get((work / "quality" / "quality.html").as_uri())
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(int(height) + 100, 16000))
        png = driver.get_screenshot_as_png()
        scale = driver.execute_script("return window.devicePixelRatio")
        for name, first, last in PARTS:
            box = driver.execute_script(_BOX, first, last)
            target = out / name
            target.write_bytes(ui.shrink_png(ui.crop_png(png, box, scale), MAX_BYTES))
            shots.append(target)
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "images", help="where the PNGs go")
    args = parser.parse_args(argv)
    if reason := ui.missing_browser():
        parser.error(reason)
    if not BCCD.is_dir():
        parser.error(f"BCCD not found at {BCCD}")
    work = Path(tempfile.mkdtemp(prefix="detection-report-screenshots-", dir="/tmp"))
    started = time.monotonic()
    try:
        shots = capture(args.out, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for shot in shots:
        print(f"{shot}  {shot.stat().st_size / 1000:.0f} kB")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
