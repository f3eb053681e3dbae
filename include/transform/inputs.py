"""What a transform scores: the objects under its input prefix (or in its manifest), each checked as the
endpoint checks a request body.

A prefix is taken as a folder: every file under it, at any depth, except hidden ones (``.DS_Store``, the
atomic writes' ``.name.tmp``), is an input, whatever its name says; one that is not an image gets an
error record like any other bad input. On the sagemaker backend the inputs are checked here first
(:func:`preflight`), because SageMaker fails the whole job on one bad object; only those that pass are
sent, in a manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from include import storage
from include.sagemaker.requests import S3_PREFIX

if TYPE_CHECKING:
    import numpy as np


class NoInputsError(ValueError):
    """The transform's input holds nothing to score (names the URI)."""


def list_inputs(transform: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The input prefix of a CreateTransformJob request and the paths under it to score, sorted."""
    from include.transform.outputs import read_manifest

    source = transform["TransformInput"]["DataSource"]["S3DataSource"]
    if source["S3DataType"] != S3_PREFIX:
        prefix, paths = read_manifest(source["S3Uri"])
        return storage.normalize(prefix), paths
    prefix = storage.normalize(source["S3Uri"])
    if not storage.isdir(prefix):
        raise NoInputsError(f"{prefix}: no such folder or prefix (the transform's input)")
    paths = [storage.relative(u, prefix) for u in storage.walk_files(prefix)]
    paths = [p for p in paths if not any(part.startswith(".") for part in p.split("/"))]
    if not paths:
        raise NoInputsError(f"{prefix} holds no files to score")
    return prefix, paths


def check_output_location(prefix: str, output: str) -> None:
    """Refuse an output inside the input: a second transform would score the first one's answers."""
    prefix, output = storage.normalize(prefix).rstrip("/") + "/", storage.normalize(output).rstrip("/") + "/"
    if output.startswith(prefix):
        raise ValueError(f"the output {output} is inside the input {prefix}: choose an output outside it")


def decode_input(data: bytes, max_payload_bytes: int) -> np.ndarray:
    """The image in an input's bytes, decoded as the endpoint decodes a request body; ``ValueError`` saying why
    not (empty, over the payload limit, not a JPEG or PNG)."""
    from include.model_artifact import decode_image

    if not data:
        raise ValueError("the file is empty")
    if len(data) > max_payload_bytes:
        raise ValueError(f"{len(data)} bytes, over MaxPayloadInMB ({max_payload_bytes // (1024 * 1024)} MB)")
    try:
        return decode_image(data)
    except ValueError:
        raise ValueError(f"not a decodable JPEG or PNG image ({len(data)} bytes)") from None


def payload_bytes(transform: Mapping[str, Any]) -> int:
    """The request's MaxPayloadInMB in bytes (6 MB, SageMaker's default, when absent)."""
    return int(transform.get("MaxPayloadInMB") or 6) * 1024 * 1024


def preflight(prefix: str, paths: list[str], output: str, max_payload_bytes: int, threads: int = 8) -> list[str]:
    """Decode every input as the endpoint would; write an error record for each one that fails. The paths that
    passed, in order."""
    from include.transform.outputs import write_error

    def check(path: str) -> bool:
        uri = storage.join(prefix, path)
        try:
            decode_input(storage.read_bytes(uri), max_payload_bytes)
        except ValueError as exc:
            write_error(output, path, uri, exc)
            return False
        return True

    with ThreadPoolExecutor(threads) as pool:  # OpenCV's decoder and the reads release the GIL
        passed = list(pool.map(check, paths))
    return [p for p, ok in zip(paths, passed, strict=True) if ok]
