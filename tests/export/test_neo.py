"""SageMaker Neo: the deployable graph of both kinds of artifact, its request, and the job on moto."""

from __future__ import annotations

import json
import tarfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from include import model_artifact
from include.export.graph import BUILTIN, GLUONCV, TRAINING_OPERATORS
from include.export.neo import NEO_PARAMS, NEO_SYMBOL, neo_input_archive
from include.sagemaker.requests import RequestError, compilation_job_request
from include.sagemaker.validation import RequestValidationError, validate_request
from tests.export.conftest import BUILTIN_IMAGE_SHAPE, builtin_params, builtin_symbols
from tests.support.aws_stand_ins import ROLE_ARN


def _unpacked(archive_uri: str, target: Path) -> Any:
    """The Neo input's two files, loaded as a Gluon block."""
    import mxnet as mx

    with tarfile.open(archive_uri.removeprefix("file://")) as tar:
        assert sorted(tar.getnames()) == [NEO_PARAMS, NEO_SYMBOL]
        tar.extractall(target, filter="data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return mx.gluon.SymbolBlock.imports(str(target / NEO_SYMBOL), ["data"], str(target / NEO_PARAMS))


def test_the_local_models_graph_loses_box_decode_and_keeps_its_outputs(
    spread_artifact: str, bccd_images: list, tmp_path: Path
) -> None:
    import mxnet as mx

    made = neo_input_archive(spread_artifact, str(tmp_path / "neo-input.tar.gz"))
    assert made["graph"] == GLUONCV and made["image_shape"] == 128
    assert "_contrib_box_decode" not in made["operators"] and "_contrib_box_nms" in made["operators"]
    neo = _unpacked(made["uri"], tmp_path / "unpacked")
    batch = mx.nd.array(model_artifact.preprocess_array([image for _, image in bccd_images[:4]], 128))
    ids, scores, boxes = (out.asnumpy() for out in model_artifact.load_detector(spread_artifact).net(batch))
    neo_ids, neo_scores, neo_boxes = (out.asnumpy() for out in neo(batch))
    np.testing.assert_array_equal(neo_ids, ids)
    np.testing.assert_allclose(neo_scores, scores, atol=1e-6)
    np.testing.assert_allclose(neo_boxes, boxes, atol=1e-3)  # pixels


def test_the_builtin_training_graph_becomes_deploy_py_s_graph(builtin_artifact: Path, tmp_path: Path) -> None:
    import mxnet as mx

    made = neo_input_archive(str(builtin_artifact), str(tmp_path / "neo-input.tar.gz"))
    assert made["graph"] == BUILTIN and made["image_shape"] == BUILTIN_IMAGE_SHAPE
    assert not set(made["operators"]) & TRAINING_OPERATORS
    assert {"_contrib_MultiBoxDetection", "_contrib_MultiBoxPrior", "softmax"} <= set(made["operators"])
    neo = _unpacked(made["uri"], tmp_path / "unpacked")
    saved = mx.nd.load(str(tmp_path / "unpacked" / NEO_PARAMS))
    assert all(key.startswith("arg:") for key in saved) and not any("label" in key for key in saved)

    training, deploy = builtin_symbols()  # what example/ssd/deploy.py builds, with the same weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reference = mx.gluon.SymbolBlock(deploy, mx.sym.var("data"))
    params = builtin_params(training)
    for name, param in reference.collect_params().items():
        param._load_init(params[f"arg:{name}"], mx.cpu())  # noqa: SLF001 (Gluon's own loader for one parameter)
    batch = mx.nd.array(np.random.default_rng(5).normal(size=(2, 3, 64, 64)).astype(np.float32))
    expected, got = reference(batch).asnumpy(), neo(batch).asnumpy()
    assert (expected[:, :, 0] >= 0).sum() > 10  # real detections to compare
    np.testing.assert_array_equal(got, expected)


def test_the_compilation_request_fits_botocore_and_neo() -> None:
    request = compilation_job_request(
        name="neo-detection-run-0123456789-t1", role_arn=ROLE_ARN, input_uri="s3://b/run/export/neo/neo-input.tar.gz",
        image_shape=512, output_uri="s3://b/run/export/neo/compiled", target_device="ml_c5", tags=[],
    )  # fmt: skip
    validate_request("CreateCompilationJob", request)
    assert request["InputConfig"]["Framework"] == "MXNET" and request["InputConfig"]["FrameworkVersion"] == "1.8"
    assert json.loads(request["InputConfig"]["DataInputConfig"]) == {"data": [1, 3, 512, 512]}
    platform = compilation_job_request(
        name="neo-x", role_arn=ROLE_ARN, input_uri="s3://b/in.tar.gz", image_shape=300, output_uri="s3://b/out",
        target_device=None, target_platform={"Os": "LINUX", "Arch": "ARM64", "Accelerator": "NVIDIA"},
        compiler_options=json.dumps({"gpu-code": "sm_72", "trt-ver": "8.4.1", "cuda-ver": "11.4"}), tags=[],
    )  # fmt: skip
    validate_request("CreateCompilationJob", platform)
    assert "TargetDevice" not in platform["OutputConfig"]
    with pytest.raises(RequestValidationError, match="TargetDevice: 'ml_c99' is not one of"):
        validate_request(
            "CreateCompilationJob", {**request, "OutputConfig": {**request["OutputConfig"], "TargetDevice": "ml_c99"}}
        )
    with pytest.raises(RequestValidationError, match="S3Uri"):
        validate_request(
            "CreateCompilationJob",
            {**request, "InputConfig": {**request["InputConfig"], "S3Uri": "file:///tmp/in.tar.gz"}},
        )
    with pytest.raises(RequestError, match="a target device or a target platform"):
        compilation_job_request(
            name="n",
            role_arn=ROLE_ARN,
            input_uri="s3://b/i",
            image_shape=1,
            output_uri="s3://b/o",
            target_device="ml_c5",
            target_platform={"Os": "LINUX", "Arch": "X86_64"},
            tags=[],
        )
