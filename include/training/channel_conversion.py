"""Augmented-manifest, image + JSON and JumpStart channels turned into RecordIO for the local algorithm.

SageMaker's algorithm reads the three input formats itself; the local one trains from RecordIO,
so a job given the other two first reads them with the project's own readers (Ground Truth
manifests, SageMaker image + JSON), as ``ingest`` does, and builds RecordIO from that table
(original images passed through, no flip: the channels hold the records to train on). This
runs inside the job, as the algorithm's own data loading does, under the job's work folder.
A JumpStart ``training`` channel is read the same way; having no validation split, ingest splits
off a seeded 20 % of its images (:mod:`include.training.jumpstart_job`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from include import storage
from include.training.training_request import (
    ANNOTATION_CHANNELS,
    JUMPSTART_CHANNEL,
    REQUIRED_CHANNELS,
    TrainingRequest,
    stage_channel,
)

VALIDATION_FRACTION = 0.2  # of a JumpStart channel's images (the other formats bring their split)
READERS = {"augmented-manifest": "groundtruth", "image-json": "imagejson", "jumpstart": "jumpstart"}


def _link_tree(source: Path, target: Path) -> None:
    """``target`` holding ``source``'s files: hard links where the file system allows, else copies."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link, dirs_exist_ok=True)


def _source_folder(request: TrainingRequest, workdir: Path) -> Path:
    """The channels laid out as the reader expects them: split-named manifests, or the four image + JSON folders."""
    if request.channel_format == "jumpstart":
        return stage_channel(request.channels[JUMPSTART_CHANNEL], workdir / "input" / "data" / JUMPSTART_CHANNEL)
    source = workdir / "input" / "source"
    source.mkdir(parents=True, exist_ok=True)
    if request.channel_format == "augmented-manifest":
        for split in REQUIRED_CHANNELS:  # each channel is one manifest file; its source-refs are full URIs
            (source / f"{split}.manifest").write_text(storage.read_text(request.channels[split]))
        return source
    for name in (*REQUIRED_CHANNELS, *ANNOTATION_CHANNELS):
        _link_tree(stage_channel(request.channels[name], workdir / "input" / "data" / name), source / name)
    return source


def recordio_channels(request: TrainingRequest, workdir: Path, emit: Callable[[str], None]) -> dict[str, Path]:
    """``train`` and ``validation`` RecordIO folders built from the request's manifest or image + JSON
    channels (and the staged ``model`` channel, if any).

    Their parent holds ``classes.json`` (the channels' class map). Raises ``ValueError`` (the
    reader's or the build's, naming the file and line) for channels that cannot be read.
    """
    from include.preprocess.ingest import ingest
    from include.preprocess.recordio import build_recordio

    source = _source_folder(request, workdir)
    table, out = workdir / "input" / "table", workdir / "input" / "recordio"
    summary = ingest(  # the channels are the splits to train on: nothing is held out for testing here
        READERS[request.channel_format], str(source), str(table), label_attribute=request.label_attribute,
        validation_fraction=VALIDATION_FRACTION, test_fraction=0,
    )
    if summary["issues"]:
        emit(f"Reading the channels: {summary['issues']} issue(s), see {table}/ingest_issues.json")
    built = build_recordio(str(table), str(out), resize=None, flip="none", workers=1)
    emit(f"Built RecordIO from the {request.channel_format} channels: {built['records']}")
    folders = {split: out / split for split in REQUIRED_CHANNELS}
    if "model" in request.channels and request.channel_format != "jumpstart":  # JumpStart's COCO model: not used
        folders["model"] = stage_channel(request.channels["model"], workdir / "input" / "data" / "model")
    return folders
