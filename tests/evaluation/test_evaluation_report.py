"""The HTML report: escaping, self-containment, and how it renders in headless Chromium."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from include.evaluation.metrics import DetectionEvaluator
from include.evaluation.report import (
    EXPORT_SECTION_ID,
    Picture,
    ReportContent,
    export_section,
    render_report,
    with_section,
)
from tests.support.evaluation_helpers import png_size

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def small_metrics() -> Any:
    ev = DetectionEvaluator(2)
    ev.add(np.array([[0, 0.9, 0, 0, 9, 9]]), np.array([[0, 0, 0, 9, 9], [1, 20, 20, 29, 29]]))
    return ev.result({0: "<b>cat</b>", 1: "dog"})


def test_text_from_the_run_is_escaped() -> None:
    html = render_report(ReportContent(title="run <1> & co", metrics=small_metrics(),
                                       hyperparameters={"learning_rate": "<script>alert(1)</script>"},
                                       notes=["a note with <tags>"]))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "run &lt;1&gt; &amp; co" in html and "&lt;b&gt;cat&lt;/b&gt;" in html
    assert "a note with &lt;tags&gt;" in html


def test_a_failed_quality_gate_is_shown_as_failed() -> None:
    quality = {"success": False, "policy": "drop", "table": {"images": 10, "boxes": 30},
               "dropped": {"boxes": 2}, "checks": [{"name": "box_geometry", "success": False, "failed": 2}]}
    html = render_report(ReportContent(title="t", metrics=small_metrics(), quality=quality))
    assert '<p class="bad">failed (policy drop)</p>' in html
    assert "boxes dropped" in html and "box_geometry" in html


def test_the_export_section_is_added_once_and_shows_neo_and_failures() -> None:
    page = render_report(ReportContent(title="t", metrics=small_metrics()))
    neo = {"neo": {"job_name": "neo-x", "status": "COMPLETED", "target": "ml_c5",
                   "compiled_artifact_uri": "s3://b/run/export/neo/compiled/model-ml_c5.tar.gz",
                   "input_uri": "s3://b/run/export/neo/neo-input.tar.gz"}}
    once = with_section(page, export_section(neo), EXPORT_SECTION_ID)
    failed = {**neo, "error": "JobFailedError: FAILED: <unsupported operator>"}
    twice = with_section(once, export_section(failed), EXPORT_SECTION_ID)
    assert once.count('<section id="export">') == twice.count('<section id="export">') == 1
    assert "model-ml_c5.tar.gz" in twice and '<p class="bad">JobFailedError: FAILED: &lt;unsupported' in twice
    assert twice.index("Metrics on the test split") < twice.index('id="export"') < twice.index("</main>")
    with pytest.raises(ValueError, match="no <main> element"):
        with_section("<html></html>", export_section(neo), EXPORT_SECTION_ID)


def test_every_picture_is_embedded_once() -> None:
    charts = [Picture("a", b"\x89PNG-a"), Picture("b", b"\x89PNG-b")]
    samples = [Picture("s", b"\x89PNG-s", caption="record 0")]
    html = render_report(ReportContent(title="t", metrics=small_metrics(), charts=charts, samples=samples))
    assert html.count("<img ") == 3
    for picture in [*charts, *samples]:
        assert html.count(picture.data_uri()) == 1
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)


def screenshot_dir(tmp_path: Path) -> Path:
    """``$TEST_ARTIFACTS_DIR`` when set (kept by CI), else the test's tmp path."""
    folder = Path(os.environ.get("TEST_ARTIFACTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium is not installed at /usr/bin/chromium")
def test_report_renders_every_chart_in_headless_chromium(evaluated: dict[str, Any], tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--no-first-run",
                     f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,900"):
        options.add_argument(argument)
    report = evaluated["output"] / "report.html"
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(report.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
        )
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(int(height) + 100, 12000))
        target = screenshot_dir(tmp_path) / "evaluation_report.png"
        assert driver.save_screenshot(str(target))
    finally:
        driver.quit()
    assert len(images) == 8  # 5 charts (precision-recall, confusion, mAP, losses, tuning) + 3 samples
    assert {alt for alt, *_ in images} >= {"Validation mAP per epoch", "Training losses per epoch", "Tuning trials",
                                           "Precision-recall per class on test", "Confusion matrix on test"}
    broken = [alt for alt, complete, width, h in images if not complete or width == 0 or h == 0]
    assert not broken, f"images that did not render: {broken}"
    width, shot_height = png_size(target.read_bytes())
    assert width >= 1000 and shot_height >= 1500
