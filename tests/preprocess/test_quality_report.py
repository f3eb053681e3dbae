"""quality.html: charts, sample images and each offending box on a thumbnail, the same figures in quality.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from include.preprocess.ingest import ingest
from include.preprocess.quality.gate import validate
from tests.support.browser_pages import EXTERNAL, MISSING_BROWSER, rendered_images, screenshot_dir
from tests.support.ingest_helpers import shapes_voc, write_voc_annotation

CHARTS = {"Boxes per class and split", "Box sizes", "Box aspect ratios", "Objects per image"}


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Drawn shapes with a box beyond the right edge (img_000), a zero-area box (img_001), validated under drop."""
    root = tmp_path_factory.mktemp("report") / "voc"
    meta = shapes_voc(root, 16)
    (name, x0, y0, _, y1), width = meta["img_000"]["objects"][0], meta["img_000"]["size"][0]
    write_voc_annotation(root, "img_000", "img_000.jpg", meta["img_000"]["size"], [(name, x0, y0, width + 30, y1)])
    (name, x0, y0, _, _) = meta["img_001"]["objects"][0]
    objects = [*meta["img_001"]["objects"], (name, x0, y0, x0, y0)]
    write_voc_annotation(root, "img_001", "img_001.jpg", meta["img_001"]["size"], objects)
    ingest("voc", str(root), str(root.parent / "in"))
    validate(
        str(root.parent / "in"), str(root.parent / "out"), policy="drop", base_network="mobilenet-1.0", image_shape=256
    )
    return root.parent / "out"


def test_the_figures_are_files_named_in_quality_json_and_embedded_in_the_page(gated):
    report = json.loads((gated / "quality.json").read_text())
    html = (gated / "quality.html").read_text()
    assert {f["title"] for f in report["figures"]} == CHARTS
    for figure in report["figures"]:
        assert (gated / figure["file"]).stat().st_size > 1000
        check = next(c for c in report["checks"] if f"checks[{c['name']}]" == figure["data"])
        assert check  # the chart's numbers are that check's details
    assert len(report["samples"]) == 12 and all((gated / s["file"]).is_file() for s in report["samples"])
    drawn = {c["name"]: [r["thumbnail"] for r in c["rows"] if "thumbnail" in r] for c in report["checks"]}
    assert drawn["box_inside_image"] == ["figures/boxes/box_inside_image-0.jpg"]
    assert len(drawn["box_ordered"]) == 1 and all((gated / t).is_file() for ts in drawn.values() for t in ts)
    sizes = next(c for c in report["checks"] if c["name"] == "box_sizes")
    assert sum(sizes["network_side_px"]["counts"]) == sizes["evaluated"]
    assert not EXTERNAL.search(html) and html.count("<img ") == 4 + 12 + sum(len(t) for t in drawn.values())


@pytest.mark.skipif(MISSING_BROWSER is not None, reason=str(MISSING_BROWSER))
def test_quality_html_shows_charts_samples_and_thumbnails_in_headless_chromium(gated, tmp_path):
    shot = screenshot_dir(tmp_path) / "quality_report.png"
    images = rendered_images(gated / "quality.html", shot)
    alts = [alt for alt, *_ in images]
    assert CHARTS <= set(alts)
    assert sum(alt.startswith("sample JPEGImages/") for alt in alts) == 12
    assert "Annotations/img_000.xml:1 JPEGImages/img_000.jpg" in alts  # the box beyond the edge, by file and line
    broken = [alt for alt, complete, width, height in images if not complete or width == 0 or height == 0]
    assert not broken, f"images that did not render: {broken}"
    assert shot.stat().st_size > 50_000
