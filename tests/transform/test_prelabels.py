"""Pre-labels from the BCCD transform: a COCO file pycocotools loads (and scores its own results list against at
AP 1), Label Studio tasks valid for Label Studio with scored predictions, a Ground Truth manifest the project's
reader takes back; boxes in pixels of each image, low scores and the corrupt file left out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from include.preprocess.readers.groundtruth import read_groundtruth
from include.serving.draw import read_classes
from include.transform.outputs import read_output
from include.transform.prelabels import write_prelabels
from tests.support.labelstudio_schema import task_problems
from tests.transform.conftest import GOOD

THRESHOLD = 0.5


@pytest.fixture(scope="module")
def written(bccd_transform: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    output = tmp_path_factory.mktemp("prelabels")
    transform = read_output(str(bccd_transform["output"]))
    summary = write_prelabels(transform, read_classes(bccd_transform["model"]), str(output),
                              score_threshold=THRESHOLD)  # fmt: skip
    return {"summary": summary, "folder": output, "transform": transform}


def _kept(written: dict) -> dict[str, list[list[float]]]:
    return {p: [r for r in rows if r[1] >= THRESHOLD] for p, rows in written["transform"].answers.items()}


def test_coco_instances_load_in_pycocotools_with_boxes_in_pixels(written: dict) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    kept = _kept(written)
    assert written["summary"]["images"] == len(GOOD) and written["summary"]["left_out_with_errors"] == 1
    coco = COCO(str(written["folder"] / "coco" / "instances.json"))
    assert sorted(i["file_name"] for i in coco.dataset["images"]) == sorted(GOOD)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["RBC", "WBC", "Platelets"]
    assert len(coco.anns) == sum(map(len, kept.values())) == written["summary"]["boxes"] > 0
    image = next(i for i in coco.dataset["images"] if i["file_name"] == GOOD[0])
    assert (image["width"], image["height"]) == (640, 480)
    best = max(coco.loadAnns(coco.getAnnIds(imgIds=image["id"])), key=lambda a: a["score"])
    cls, score, x0, y0, x1, y1 = kept[GOOD[0]][0]
    assert best["category_id"] == int(cls) + 1 and best["score"] == score
    assert best["bbox"] == pytest.approx([x0 * 640, y0 * 480, (x1 - x0) * 640, (y1 - y0) * 480])

    results = coco.loadRes(str(written["folder"] / "coco" / "results.json"))
    assert len(results.anns) == len(coco.anns)
    evaluation = COCOeval(coco, results, "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[1] == pytest.approx(1.0)  # AP@0.5 of the boxes against themselves


def test_labelstudio_tasks_are_valid_scored_predictions(written: dict) -> None:
    folder = written["folder"] / "labelstudio"
    tasks = json.loads((folder / "tasks.json").read_text())
    assert task_problems(tasks, (folder / "label_config.xml").read_text()) == []
    assert len(tasks) == len(GOOD) and all(len(t["predictions"]) == 1 for t in tasks)
    assert {t["data"]["image"] for t in tasks} == {f"/data/local-files/?d={n}" for n in GOOD}
    kept = _kept(written)
    task = next(t for t in tasks if t["data"]["image"].endswith(GOOD[0]))
    prediction = task["predictions"][0]
    assert prediction["model_version"] == written["transform"].record["TransformJobName"]
    assert [r["score"] for r in prediction["result"]] == [row[1] for row in kept[GOOD[0]]]
    assert prediction["score"] == pytest.approx(sum(r[1] for r in kept[GOOD[0]]) / len(kept[GOOD[0]]))
    x0 = kept[GOOD[0]][0][2]
    assert prediction["result"][0]["value"]["x"] == pytest.approx(100 * x0)


def test_labelstudio_schema_check_catches_what_label_studio_refuses(written: dict) -> None:
    folder = written["folder"] / "labelstudio"
    tasks = json.loads((folder / "tasks.json").read_text())
    region = tasks[0]["predictions"][0]["result"][0]
    region["value"]["rectanglelabels"] = ["Neutrophil"]
    region["value"]["width"] = 120.0
    del tasks[1]["data"]["image"]
    problems = task_problems(tasks, (folder / "label_config.xml").read_text())
    assert any("label 'Neutrophil' is not one of" in p for p in problems)
    assert any("120.0 is greater than the maximum of 100" in p for p in problems)
    assert any("data has no 'image'" in p for p in problems)


def test_groundtruth_manifest_reads_back_with_the_scores_as_confidences(written: dict) -> None:
    manifest = written["folder"] / "groundtruth" / "output.manifest"
    source = read_groundtruth(str(manifest))
    assert len(source.boxes) == written["summary"]["boxes"] and source.classes == {0: "RBC", 1: "WBC", 2: "Platelets"}
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(lines) == len(GOOD)
    metadata = lines[0]["bounding-box-metadata"]
    assert metadata["human-annotated"] == "no" and metadata["type"] == "groundtruth/object-detection"
    first = next(line for line in lines if line["source-ref"].endswith(GOOD[0]))
    confidences = [o["confidence"] for o in first["bounding-box-metadata"]["objects"]]
    assert confidences == [row[1] for row in _kept(written)[GOOD[0]]]


def test_images_without_a_box_kept_are_listed_and_wrong_classes_are_named(written: dict, tmp_path: Path) -> None:
    summary = write_prelabels(written["transform"], {0: "RBC", 1: "WBC", 2: "Platelets"}, str(tmp_path),
                              score_threshold=1.0, formats=["labelstudio"])  # fmt: skip
    assert summary["boxes"] == 0 and summary["images_without_boxes"] == len(GOOD)
    assert set(summary["files"]) == {"labelstudio", "labelstudio_config"}
    with pytest.raises(ValueError, match=r"class ids \[[0-9, ]+\] are not the model's"):
        write_prelabels(written["transform"], {0: "RBC"}, str(tmp_path), score_threshold=0.0)
    with pytest.raises(ValueError, match="unknown pre-label format"):
        write_prelabels(written["transform"], {0: "RBC"}, str(tmp_path), score_threshold=0.0, formats=["yolo"])
