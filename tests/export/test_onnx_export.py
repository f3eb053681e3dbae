"""The ONNX export: a valid, self-describing model whose detections on ONNX Runtime are the MXNet model's."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import distribution, requires
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from include import model_artifact, ssd_numpy
from include.export.graph import GraphError
from include.export.onnx_export import OPSET, export_onnx
from include.export.parity import Tolerances, compare_models, match_detections
from include.ssd_numpy import OnnxSsd


def _path(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def test_the_export_passes_the_checker_and_describes_itself(onnx_export: dict[str, Any]) -> None:
    import onnx

    path = _path(onnx_export["uri"])
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    assert onnx_export["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert onnx_export["bytes"] == path.stat().st_size

    def dims(value: Any) -> list:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    # one input, the weights are constants (not inputs ONNX Runtime must be fed or cannot fold)
    assert [(i.name, dims(i)) for i in model.graph.input] == [("data", ["batch", 3, 128, 128])]
    anchors = onnx_export["outputs"]["boxes"][1]
    assert anchors == onnx_export["outputs"]["class_probs"][1] > 300  # 390 at 128 px
    assert [(o.name, dims(o)) for o in model.graph.output] == [
        ("class_probs", ["batch", anchors, 4]),
        ("boxes", ["batch", anchors, 4]),
    ]
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["classes"]) == {"0": "RBC", "1": "WBC", "2": "Platelets"}
    assert meta["image_shape"] == "128"
    assert json.loads(meta["mean"]) == list(ssd_numpy.MEAN) and json.loads(meta["std"]) == list(ssd_numpy.STD)
    assert json.loads(meta["postprocess"]) == {
        "score_threshold": 0.01,
        "nms_threshold": 0.45,
        "nms_topk": 400,
        "post_nms": 100,
        "force_suppress": False,
    }
    assert "INTER_LINEAR" in meta["input"] and meta["source_model"].endswith("model.tar.gz")
    # the post-processing ships beside the model, byte for byte the pipeline's own
    folder = path.parent
    assert (folder / "ssd_numpy.py").read_bytes() == Path(ssd_numpy.__file__).read_bytes()
    assert json.loads((folder / "classes.json").read_text()) == {"0": "RBC", "1": "WBC", "2": "Platelets"}


def test_onnx_runtime_gives_the_mxnet_models_detections(
    spread_artifact: str, onnx_export: dict[str, Any], bccd_images: list
) -> None:
    parity = compare_models(
        model_artifact.load_detector(spread_artifact),
        OnnxSsd(_path(onnx_export["uri"])),
        bccd_images,
        Tolerances(1e-3, 1e-3),
    )
    assert parity["passed"], parity
    assert parity["images"] == 12 and parity["unmatched"] == 0
    assert parity["detections"]["mxnet"] == parity["detections"]["onnxruntime"] == parity["matched"] >= 12 * 50
    assert parity["images_in_same_order"] == 12  # not only within tolerance: the same rows in the same order
    assert parity["max_score_diff"] < 1e-4 and parity["max_box_diff"] < 1e-4


def test_scales_mxnet_ignores_are_exported_as_the_ones_it_computes_with(
    spread_artifact: str, onnx_export: dict[str, Any]
) -> None:
    import mxnet as mx
    import onnx
    from onnx import numpy_helper

    from include.export.graph import SymbolGraph

    with tempfile.TemporaryDirectory() as tmp:
        folder = model_artifact.unpack(spread_artifact, Path(tmp))
        fixed = SymbolGraph(folder / model_artifact.SYMBOL_FILE).fixed_gammas()
        stored = {
            k.split(":", 1)[1]: v.asnumpy() for k, v in mx.nd.load(str(folder / model_artifact.PARAMS_FILE)).items()
        }
    assert fixed and all(name.startswith("expand_") for name in fixed)  # GluonCV's symbol-built extra layers
    assert all(np.abs(stored[name] - 1).max() > 0.1 for name in fixed)  # the stored values are not what MXNet uses
    weights = {
        i.name: numpy_helper.to_array(i)
        for i in onnx.load(onnx_export["uri"].removeprefix("file://")).graph.initializer
    }
    assert all((weights[name] == 1).all() for name in fixed)
    learnt = next(k for k in stored if k.endswith("gamma") and k not in fixed)
    np.testing.assert_array_equal(weights[learnt], stored[learnt])  # the others are exported as they are


def test_the_batch_dimension_is_dynamic(onnx_export: dict[str, Any], bccd_images: list) -> None:
    model = OnnxSsd(_path(onnx_export["uri"]))
    batch = ssd_numpy.preprocess([image for _, image in bccd_images[:3]], 128)
    probs, boxes = model.forward(batch)
    assert probs.shape[:1] == boxes.shape[:1] == (3,)
    one_probs, one_boxes = model.forward(batch[1:2])
    np.testing.assert_allclose(one_probs[0], probs[1], atol=1e-6)
    np.testing.assert_allclose(one_boxes[0], boxes[1], atol=1e-4)


def test_a_builtin_algorithm_artifact_is_refused_with_the_way_out(builtin_artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(GraphError, match=r"built-in algorithm's training graph.*MultiBoxDetection.*--format neo"):
        export_onnx(str(builtin_artifact), str(tmp_path / "onnx"))
    assert not (tmp_path / "onnx").exists()


def test_an_archive_that_is_no_model_is_named(tmp_path: Path) -> None:
    bogus = tmp_path / "model.tar.gz"
    with tarfile.open(bogus, "w:gz") as tar:
        note = tmp_path / "README"
        note.write_text("not a model")
        tar.add(note, arcname="README")
    with pytest.raises(ValueError, match=r"model.tar.gz is not a model artifact: missing model_algo_1-symbol.json"):
        export_onnx(str(bogus), str(tmp_path / "onnx"))


# --- the export outside the project -------------------------------------------------------------

#: Runs in the fresh environment: proves what is importable, then runs the export on the images given.
FRESH_SCRIPT = r"""
import importlib.metadata, importlib.util, json, sys
import numpy as np

export, images_file, batch_file = sys.argv[1:4]
sys.path.insert(0, export)  # what a user does: ssd_numpy.py beside model.onnx
from ssd_numpy import OnnxSsd, postprocess

absent = [m for m in ("mxnet", "cv2", "include", "onnx", "gluoncv") if importlib.util.find_spec(m) is not None]
model = OnnxSsd(export + "/model.onnx")
images = np.load(images_file)
from_images = model.predict_batch(list(images))  # NumPy's resize: OpenCV is not there
from_batch = postprocess(*model.forward(np.load(batch_file)), model.settings)
print(json.dumps({
    "distributions": sorted(d.metadata["Name"].lower() for d in importlib.metadata.distributions()),
    "importable_but_should_not_be": absent,
    "classes": model.classes,
    "from_batch": [d.tolist() for d in from_batch],
    "from_images": [d.tolist() for d in from_images],
}))
"""


def _closure(names: list[str]) -> set[str]:
    """Distribution names ``names`` need to run, extras left out."""
    from packaging.requirements import Requirement

    needed, todo = set(), list(names)
    while todo:
        name = todo.pop().lower()
        if name in needed:
            continue
        needed.add(name)
        for text in requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return needed


def _fresh_venv(root: Path, distributions: set[str]) -> Path:
    """A venv (no system site-packages, no pip) holding exactly ``distributions``, as installed here.

    Their files are copied from this environment by their RECORD: the same wheels' contents an
    installer puts there, offline (a test may not reach PyPI).
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    (site,) = root.glob("lib/python*/site-packages")
    for name in distributions:
        dist = distribution(name)
        for file in dist.files or []:
            source = Path(dist.locate_file(file)).resolve()
            if source.is_file() and "__pycache__" not in file.parts and not str(file).startswith(".."):
                target = site / file
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    return root / "bin" / "python"


@pytest.mark.slow
def test_the_export_runs_in_a_fresh_venv_with_only_onnxruntime_and_numpy(
    spread_artifact: str, onnx_export: dict[str, Any], bccd_images: list, tmp_path: Path
) -> None:
    wanted = _closure(["onnxruntime", "numpy"])
    assert wanted == {"onnxruntime", "numpy", "flatbuffers", "packaging", "protobuf"}
    python = _fresh_venv(tmp_path / "venv", wanted)
    images = [image for _, image in bccd_images[:4]]
    np.save(tmp_path / "images.npy", np.stack([image[:400, :400] for image in images]))  # one shape for one array
    np.save(tmp_path / "batch.npy", ssd_numpy.preprocess([image[:400, :400] for image in images], 128))
    run = subprocess.run(
        [str(python), "-I", "-c", FRESH_SCRIPT, str(_path(onnx_export["uri"]).parent),
         str(tmp_path / "images.npy"), str(tmp_path / "batch.npy")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(out["distributions"]) == wanted and out["importable_but_should_not_be"] == []
    assert out["classes"] == {"0": "RBC", "1": "WBC", "2": "Platelets"}
    # on the endpoint's preprocessing, the MXNet model's detections within the tolerances
    mxnet = model_artifact.load_detector(spread_artifact).predict_batch([image[:400, :400] for image in images])
    for i, (reference, rows) in enumerate(zip(mxnet, out["from_batch"], strict=True)):
        assert match_detections(str(i), reference, np.asarray(rows).reshape(-1, 6), Tolerances()).passed
    # with NumPy's own resize (one intensity level off OpenCV at most) the detections barely move
    loose = [
        match_detections(str(i), reference, np.asarray(rows).reshape(-1, 6), Tolerances(0.02, 0.02))
        for i, (reference, rows) in enumerate(zip(mxnet, out["from_images"], strict=True))
    ]
    assert sum(c.matched for c in loose) >= 0.9 * sum(c.reference for c in loose)
