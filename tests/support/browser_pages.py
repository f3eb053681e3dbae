"""The project's self-contained HTML reports in headless Chromium (devtools.ui_browser): do their pictures render."""

from __future__ import annotations

import os
import re
from pathlib import Path

from devtools import ui_browser as ui

MISSING_BROWSER = ui.missing_browser()
#: A page that fetches anything (an http(s) or protocol-relative src/href) is not self-contained.
EXTERNAL = re.compile(r"""(src|href)\s*=\s*["']?(https?:)?//""")


def screenshot_dir(tmp_path: Path) -> Path:
    """``$TEST_ARTIFACTS_DIR`` when set (kept by CI), else the test's tmp path."""
    folder = Path(os.environ.get("TEST_ARTIFACTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def rendered_images(page: Path, screenshot: Path, width: int = 1280) -> list[tuple[str, bool, int, int]]:
    """``(alt, complete, natural width, natural height)`` of every image of ``page``; a full-page screenshot saved."""
    with ui.chromium(width, 900) as driver:
        driver.get(page.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
        )
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, min(int(height) + 100, 16000))
        ui.save_screenshot(driver, screenshot)
    return [tuple(i) for i in images]
