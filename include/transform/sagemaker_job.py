"""A transform on SageMaker: the images checked before (SageMaker fails the whole job on one bad object), the
model created unless the run's exists, the wait sized from the image count, and transform.json written after.

The pre-flight (:func:`prepare`) decodes every input under the prefix as the endpoint would, writes an error
record for each that fails and a ManifestFile of the others (``<output>/transform.manifest``), which the
request then names instead of the prefix. After the job, :func:`record_job` counts the ``.out`` objects it
left and writes the same ``transform.json`` as the local executor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from include import storage
from include.run_layout import TRANSFORM_ERROR_SUFFIX, TRANSFORM_OUTPUT_SUFFIX

log = logging.getLogger(__name__)


def prepare(input_uri: str, output_uri: str, max_payload_bytes: int) -> dict[str, Any]:
    """Check every input under ``input_uri``; error records and the manifest of those that pass go to
    ``output_uri``. ``{"manifest_uri", "inputs", "passed", "errors"}``; ``ValueError`` when none passed."""
    from include.transform.inputs import check_output_location, list_inputs, preflight
    from include.transform.outputs import remove_stale, write_manifest

    source = {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}}}
    prefix, paths = list_inputs({"TransformInput": source})
    check_output_location(prefix, output_uri)
    remove_stale(output_uri, paths)
    passed = preflight(prefix, paths, output_uri, max_payload_bytes)
    log.info("pre-flight: %d of %d inputs under %s decode; the others have error records in %s", len(passed),
             len(paths), prefix, output_uri)  # fmt: skip
    if not passed:
        raise ValueError(f"none of the {len(paths)} files under {prefix} is a decodable image (see {output_uri})")
    manifest = write_manifest(output_uri, prefix, passed)
    return {"manifest_uri": manifest, "inputs": len(paths), "passed": len(passed), "errors": len(paths) - len(passed)}


def transform_wait_seconds(transform: Mapping[str, Any]) -> int:
    """The longest the request's job may run, from its image count (the manifest's entries, the prefix's files)."""
    from include.sagemaker.requests import transform_duration_seconds
    from include.transform.inputs import list_inputs

    return transform_duration_seconds(transform, len(list_inputs(transform)[1]))


def model_exists(describe: Callable[[str], Any], name: str) -> bool:
    """Whether SageMaker has a model ``name`` (``describe``: DescribeModel by name, boto3's or the provider hook's)."""
    from botocore.exceptions import ClientError

    from include.sagemaker.client import is_missing_error

    try:
        describe(name)
    except ClientError as err:
        if not is_missing_error(err):
            raise
        return False
    log.info("model %s exists (an earlier try's): the transform uses it", name)
    return True


def create_model_unless_exists(sm: Any, request: Mapping[str, Any]) -> bool:
    """CreateModel of the combined request's ``Model`` part unless a model of that name exists (a retry's); whether
    one was created."""
    model = request.get("Model")
    if not model or model_exists(lambda name: sm.describe_model(ModelName=name), model["ModelName"]):
        return False
    sm.create_model(**model)
    log.info("created model %s", model["ModelName"])
    return True


def record_job(description: Mapping[str, Any]) -> dict[str, Any]:
    """transform.json for a job SageMaker ran (its DescribeTransformJob answer), counted from the output folder:
    inputs are the answers plus the pre-flight's error records. Returns ``Counts``."""
    from include.transform.outputs import write_record

    output = storage.normalize(description["TransformOutput"]["S3OutputPath"])
    files = storage.walk_files(output) if storage.exists(output) else []
    outputs = sum(u.endswith(TRANSFORM_OUTPUT_SUFFIX) for u in files)
    errors = [storage.relative(u, output) for u in files if u.endswith(TRANSFORM_ERROR_SUFFIX)]
    counts = {"inputs": outputs + len(errors), "outputs": outputs, "errors": len(errors)}
    write_record(output, description, counts, errors, {"Backend": "sagemaker"})
    return counts
