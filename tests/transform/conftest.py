"""A folder of real photographs (BCCD, two in a subfolder, one as PNG) with one corrupt file, and its transform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from include import storage
from tests.support.shared_data import BCCD_IMAGES

#: The photographs' paths in the folder (the corrupt one last).
GOOD = ("BloodImage_00000.jpg", "BloodImage_00001.jpg", "BloodImage_00002.jpg", "BloodImage_00003.jpg",
        "slide-2/BloodImage_00004.jpg", "slide-2/BloodImage_00005.png")  # fmt: skip
CORRUPT = "slide-2/BloodImage_00006.jpg"


def make_photo_folder(folder: Path) -> Path:
    """:data:`GOOD` copied from BCCD (the PNG re-encoded from its JPEG) and :data:`CORRUPT`, a JPEG cut in half."""
    import cv2

    sources = sorted(BCCD_IMAGES.glob("*.jpg"))[:7]
    if len(sources) < 7:
        pytest.skip(f"the BCCD data set is not at {BCCD_IMAGES}")
    (folder / "slide-2").mkdir(parents=True)
    for name, source in zip(GOOD, sources, strict=False):
        if name.endswith(".png"):
            cv2.imwrite(str(folder / name), cv2.imread(str(source)))
        else:
            (folder / name).write_bytes(source.read_bytes())
    data = sources[6].read_bytes()
    (folder / CORRUPT).write_bytes(data[: len(data) // 2])
    return folder


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_photo_folder(tmp_path_factory.mktemp("photos") / "unlabelled")


def local_transform_request(model_uri: str, input_uri: str, output_uri: str, run_id: str = "t-1") -> dict[str, Any]:
    """The combined request as the pipeline builds it, for the local backend."""
    from include.sagemaker.naming import RunIdentity
    from include.sagemaker.requests import LOCAL_ROLE_ARN, TransformSettings, transform_request

    return transform_request(RunIdentity("tests", run_id, 1), model_data_url=model_uri, role_arn=LOCAL_ROLE_ARN,
                             region="us-east-1", input_uri=input_uri, output_uri=output_uri,
                             settings=TransformSettings())  # fmt: skip


@pytest.fixture(scope="session")
def bccd_transform(spread_artifact: str, photo_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The folder transformed locally with the spread SSD by two worker processes (shared: do not modify)."""
    from include.execution import TRANSFORM, execute

    output = tmp_path_factory.mktemp("transform") / "out"
    request = local_transform_request(spread_artifact, storage.normalize(photo_folder), storage.normalize(output))
    result = execute(TRANSFORM, request, backend="local", local_options={"workers": 2})
    return {"result": result, "output": output, "model": spread_artifact, "input": photo_folder}
