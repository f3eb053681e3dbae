"""Entries that ingest could not turn into clean table rows, carried to the quality gate.

Ingest never drops an entry silently: an image that is missing or does not decode, a path
that leaves the data set root, an image without boxes, a box of an unknown class... each
becomes an :class:`Issue` naming the annotation file, the line or record, and the reason.
They are written as ``ingest_issues.json`` next to the table, and the quality gate reports
them under the check named in :attr:`Issue.check`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from include import storage

ISSUES_FILE = "ingest_issues.json"

#: Checks that ingest reports (the quality gate adds its own table checks), with what each means.
INGEST_CHECKS: dict[str, str] = {
    "image_files": "every image file exists inside the data set root and decodes as an accepted image",
    "annotation_files": "every image listed in the data set's split lists has an annotation file",
    "images_have_boxes": "every image has at least one box",
    "background_images": "images the data set marks as holding no object (they cannot be rows of the table)",
    "class_ids_known": "every box has a class the data set declares and the class selection keeps",
    "boxes_supported": "every region is an axis-aligned box of one class (no crowd region, rotation or polygon)",
    "classes_left_out": "boxes of classes the class selection leaves out, counted per class",
}


@dataclass(frozen=True)
class Issue:
    """One rejected entry: where it was written, what it concerns and why it was rejected."""

    file: str  # annotation file, relative to the data set root
    line: int  # 1-based line (text, JSON Lines, XML) or object number (image+JSON); 0 for the whole file
    image: str  # image path as the annotation gives it
    check: str  # one of INGEST_CHECKS
    reason: str
    class_name: str | None = None  # the entry's class, when the annotation names one the data set declares

    def __post_init__(self) -> None:
        if self.check not in INGEST_CHECKS:
            raise ValueError(f"unknown ingest check {self.check!r}; expected one of {sorted(INGEST_CHECKS)}")

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def write_issues(issues: list[Issue], output_uri: str) -> str:
    """Write ``ingest_issues.json`` (a JSON list, possibly empty) under ``output_uri``; returns its URI."""
    uri = storage.join(output_uri, ISSUES_FILE)
    storage.write_text(uri, json.dumps([asdict(i) for i in issues], indent=1))
    return uri


def read_issues(input_uri: str) -> list[Issue]:
    """Read ``ingest_issues.json`` from a folder URI; a folder without one has no issues."""
    uri = storage.join(input_uri, ISSUES_FILE)
    if not storage.exists(uri):
        return []
    try:
        return [Issue(**entry) for entry in json.loads(storage.read_text(uri))]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{uri}: not a valid ingest issues list: {exc}") from exc
