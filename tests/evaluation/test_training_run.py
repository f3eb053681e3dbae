"""What a training record says about the run: the weights it started from, on either backend."""

from __future__ import annotations

from include.evaluation.training_run import start_weights


def test_start_weights_of_a_fallback_a_scratch_run_and_sagemaker() -> None:
    fallback = {"HyperParameters": {"use_pretrained_model": "0"},
                "PretrainedFallback": "mobilenet1.0-efbb2ca3.params is not in the weights cache"}
    assert start_weights(fallback) == {
        "started from": "random initial values (fallback: local.pretrained_fallback is scratch)",
        "why": "mobilenet1.0-efbb2ca3.params is not in the weights cache"}
    assert start_weights({"HyperParameters": {"use_pretrained_model": "0"}}) == {
        "started from": "random initial values (use_pretrained_model=0)"}
    sagemaker = {"HyperParameters": {"use_pretrained_model": "1", "base_network": "resnet-50"}}
    chosen = "ImageNet weights of resnet-50, chosen by SageMaker's algorithm"
    assert start_weights(sagemaker) == {"started from": chosen}
    assert start_weights({}) == {}


def test_start_weights_of_a_jumpstart_request_run_here() -> None:
    weights = {"base_network": "mobilenet-1.0", "file": "f", "sha256": "s", "source": "cache",
               "gluoncv_sha1_verified": True}
    record = {"HyperParameters": {"epochs": "5"}, "JumpStartModelId": "mxnet-od-ssd-512-mobilenet1-0-coco",
              "LocalSubstitute": "GluonCV SSD ...", "PretrainedWeights": weights}
    assert start_weights(record) == {
        "started from": "ImageNet weights of mobilenet-1.0", "file": "f", "sha256": "s", "source": "cache",
        "GluonCV model-store SHA-1 verified": True, "JumpStart model": "mxnet-od-ssd-512-mobilenet1-0-coco",
        "run locally as": "GluonCV SSD ..."}
