"""One RecordIO shard as a SageMaker Processing job: the container's entry point, on the project's image.

SageMaker downloads the shard's ``work.json`` to :data:`WORK_FOLDER`, runs
``python -m include.preprocess.shard_job`` with :func:`arguments`, and uploads :data:`OUTPUT_FOLDER`
to the shard's folder on S3 when the job ends. The job builds the shard with the same code as a
shard task (:func:`include.preprocess.recordio.build_shard`; the images are read from their S3 URIs
with the job's role) and writes :data:`RESULT_FILE`, the shard task's result with the files'
location set to the S3 folder, which the shard task returns once the job completed
(:func:`read_result`). The arguments stay short (each at most 256 characters): the work list
travels as a file, only the shard's number and options as arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

PROCESSING_ROOT = "/opt/ml/processing"
WORK_FOLDER = f"{PROCESSING_ROOT}/input/work"
OUTPUT_FOLDER = f"{PROCESSING_ROOT}/output/shard"
WORK_FILE = "work.json"
RESULT_FILE = "result.json"
ENTRY_POINT = ["python", "-m", "include.preprocess.shard_job"]
#: SageMaker's limit on each ContainerArguments string.
MAX_ARGUMENT = 256


def arguments(spec: Mapping[str, Any], shard_folder: str) -> list[str]:
    """The container's arguments for the shard ``spec`` (from ``plan_shards``), its files going to ``shard_folder``."""
    shard = json.dumps(
        {"shard": spec["shard"], "shards": spec["shards"], "options": spec["options"]},
        separators=(",", ":"),
        sort_keys=True,
    )
    args = ["--work", f"{WORK_FOLDER}/{WORK_FILE}", "--output", OUTPUT_FOLDER, "--shard-uri", shard_folder, "--spec",
            shard]  # fmt: skip
    if too_long := [a for a in args if len(a) > MAX_ARGUMENT]:
        raise ValueError(f"a Processing job argument is longer than {MAX_ARGUMENT} characters: {too_long[0][:80]}...")
    return args


def run(work: str, output: str, shard_uri: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Build the shard from the local ``work`` list into the local ``output`` folder; its result, also in ``output``."""
    from include import storage
    from include.preprocess.recordio import build_shard

    result = build_shard({**spec, "work_uri": work, "output_uri": shard_uri}, folder=output)
    for channel in result["channels"].values():
        channel["uri"] = storage.normalize(shard_uri)  # where SageMaker uploads the files
    storage.write_text(storage.join(output, RESULT_FILE), json.dumps(result, indent=2))
    return result


def read_result(spec: Mapping[str, Any], shard_uri: str) -> dict[str, Any]:
    """The result a completed job uploaded to ``shard_uri``; an error when it is missing or of another shard."""
    from include import storage

    uri = storage.join(shard_uri, RESULT_FILE)
    if not storage.exists(uri):
        raise FileNotFoundError(f"{uri}: the Processing job of shard {spec['shard']} completed without its result")
    result = json.loads(storage.read_text(uri))
    if (result.get("shard"), result.get("shards")) != (spec["shard"], spec["shards"]):
        raise ValueError(f"{uri} is the result of shard {result.get('shard')}/{result.get('shards')}, "
                         f"not {spec['shard']}/{spec['shards']}")  # fmt: skip
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m include.preprocess.shard_job", description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="the shard's work.json (downloaded by SageMaker)")
    parser.add_argument("--output", required=True, help="the folder SageMaker uploads when the job ends")
    parser.add_argument("--shard-uri", required=True, help="where the output folder is uploaded (S3)")
    parser.add_argument("--spec", required=True, help='JSON: {"shard", "shards", "options"}')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(args.work, args.output, args.shard_uri, json.loads(args.spec))
    records = {split: channel["records"] for split, channel in result["channels"].items()}
    print(f"shard {result['shard']} of {result['shards']}: {records} records", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
