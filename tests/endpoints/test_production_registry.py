"""What a release takes from the registry (a real MLflow server): the champion, an approved version, nothing else."""

from __future__ import annotations

import pytest

from include.endpoints.production import ReleaseError, release_from_registry
from include.tracking.promotion import APPROVED, PACKAGE_TAG
from include.tracking.registry import APPROVAL_TAG, Registry
from tests.support.tracking_fixtures import model_run


def test_the_champion_or_an_approved_version_is_released_and_nothing_else(tracking_ref, tmp_path):
    registry = Registry(tracking_ref.uri, tracking_ref.registered_model)
    with pytest.raises(ReleaseError, match="has no champion yet"):
        release_from_registry(registry, None)
    sources = []
    for name in ("m0", "m1", "m2"):
        run_id, source = model_run(tracking_ref, tmp_path, name)
        registry.register(source, run_id, {"map": 0.5})
        sources.append(source)
    registry.set_champion(1, action="approve", by="test", reason="first")
    registry.tag_version(2, {APPROVAL_TAG: APPROVED, PACKAGE_TAG: "arn:aws:sagemaker:us-east-1:1:model-package/g/2"})

    champion = release_from_registry(registry, None, runtime="mxnet")
    assert (champion.version, champion.model_uri, champion.model_id) == (1, sources[0], "v1")
    approved = release_from_registry(registry, 2)
    assert approved.model_package_arn.endswith("/g/2") and approved.model_uri == sources[1]
    with pytest.raises(ReleaseError, match="version 3 .* was never approved"):
        release_from_registry(registry, 3)
