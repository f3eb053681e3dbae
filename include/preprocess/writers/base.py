"""What every writer exports: the table, the boxes the gate quarantined, and the flags a person should look at.

The input is a folder holding ``annotations.parquet`` and ``classes.json``: a quality gate's
output (the gated table, plus ``quarantine.parquet``, the boxes it dropped, exported again with
their flag) or an ingest output. Flags come from three places, joined per box:

- ``quarantined: <check>: <reason>``: a box the gate dropped;
- ``<check>: <reason>``: a finding of ``quality.json`` (the input folder's, or ``quality_uri``),
  errors and warnings alike (a near-copy, a probable typo), matched to a box by its source file,
  line, image and class;
- ``label issue: <kind> ...``: a box the model's predictions single out
  (``label_issues.json`` of an evaluation, :mod:`include.evaluation.label_issues`). Objects the
  model found and no box covers are :attr:`ExportData.suggestions` (Label Studio shows them as
  predictions; the other formats list them in ``label_issues.csv``).

Images are copied (or, locally, symbolically linked) into the export under their table path,
so an export is a data set folder the tool (and ``detection-pipeline ingest``) can read.
"""

from __future__ import annotations

import csv
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from include import storage
from include.preprocess.annotations import read_classes, read_table
from include.run_layout import LABEL_ISSUES_JSON, QUALITY_JSON, QUARANTINE_TABLE

if TYPE_CHECKING:
    import pandas as pd

IMAGE_MODES = ("copy", "link")
SUGGESTIONS_CSV = "label_issues.csv"
#: The split names the tools use for the table's splits.
SPLIT_FOLDERS = {"train": "train", "validation": "val", "test": "test"}


@dataclass
class ExportData:
    """The rows to write (``quality_issue``: the joined flags or None; ``quarantined``; ``path``: the image's path
    in the export), classes and suggestions."""

    table: pd.DataFrame
    classes: dict[int, str]
    suggestions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def flagged(self) -> int:
        return int(self.table["quality_issue"].notna().sum())


def _key(file: object, line: object, image: object, class_name: object) -> tuple[str, int, str, str]:
    return str(file), int(line), str(image), str(class_name)


def _findings(quality: dict[str, Any]) -> dict[tuple, list[str]]:
    """``{(file, line, image, class): ["check: reason", ...]}`` of every finding about a table row."""
    out: dict[tuple, list[str]] = {}
    for check in quality.get("checks", []):
        for finding in check.get("rows", []):
            if finding.get("row") is None:
                continue  # an ingest entry: no box of the table
            key = _key(finding["file"], finding["line"], finding["image"], finding["class_name"])
            out.setdefault(key, []).append(f"{check['name']}: {finding['reason']}")
    return out


def _label_issues(document: dict[str, Any]) -> tuple[dict[tuple, list[str]], list[dict[str, Any]]]:
    """Flags of labelled boxes, and the model's objects no box covers, from ``label_issues.json``."""
    flags: dict[tuple, list[str]] = {}
    suggestions = []
    for issue in document.get("issues", []):
        if issue.get("source_file") is None:
            suggestions.append(issue)
            continue
        key = _key(issue["source_file"], issue["source_line"], issue["image"], issue["class_name"])
        flags.setdefault(key, []).append(f"label issue: {issue['description']}")
    return flags, suggestions


def _optional_json(uri: str | None, name: str) -> dict[str, Any] | None:
    if uri is None:
        return None
    target = uri if uri.endswith(".json") else storage.join(uri, name)
    return json.loads(storage.read_text(target)) if storage.exists(target) else None


def load(input_uri: str, quality_uri: str | None = None, label_issues_uri: str | None = None) -> ExportData:
    """The table under ``input_uri`` with the quarantined rows and every flag (see the module doc)."""
    import pandas as pd

    table = read_table(input_uri).assign(quarantined=False, quality_issue=None)
    quarantine_uri = storage.join(input_uri, QUARANTINE_TABLE)
    if storage.exists(quarantine_uri):
        with storage.open_read(quarantine_uri) as fh:
            dropped = pd.read_parquet(fh).assign(quarantined=True)
        dropped["quality_issue"] = "quarantined: " + dropped["quality_issue"]
        table = pd.concat([table, dropped], ignore_index=True)
    quality = _optional_json(quality_uri or input_uri, QUALITY_JSON)
    label_document = _optional_json(label_issues_uri, LABEL_ISSUES_JSON)
    if label_issues_uri is not None and label_document is None:
        raise FileNotFoundError(f"no {LABEL_ISSUES_JSON} at {label_issues_uri} (an evaluation output folder)")
    findings = _findings(quality) if quality else {}
    label_flags, suggestions = _label_issues(label_document or {})
    keys = zip(table["source_file"], table["source_line"], table["image"], table["class_name"], strict=True)
    flags = []
    for key, quarantined, reason in zip(keys, table["quarantined"], table["quality_issue"], strict=True):
        k = _key(*key)  # a quarantined box's findings are its quarantine reasons already
        reasons = ([reason] if quarantined else findings.get(k, [])) + label_flags.get(k, [])
        flags.append("; ".join(reasons) if reasons else None)
    table["quality_issue"] = pd.array(flags, dtype="string")
    table = table.sort_values(["split", "image", "source_file", "source_line"], kind="stable").reset_index(drop=True)
    table["path"] = export_paths(table["image"])
    known = set(table["image"])
    return ExportData(table, read_classes(input_uri), [s for s in suggestions if s.get("image") in known])


def export_paths(images: pd.Series) -> list[str]:
    """Each image's path in an export: its table path without the folders every image shares (``JPEGImages/``)."""
    import posixpath

    folders = {posixpath.dirname(i) for i in images}
    common = posixpath.commonpath(list(folders)) if folders and "" not in folders else ""
    return [i[len(common) + 1 :] if common else i for i in images]


def images_of(table: pd.DataFrame) -> list[tuple[str, list[Any]]]:
    """``(export path, the image's rows as named tuples)`` in table order (the writers' unit).

    One pass of ``itertuples`` over the table: per-image pandas access cost 10 ms an image.
    """
    out: dict[str, list[Any]] = {}
    for row in table.itertuples(index=False):
        out.setdefault(row.path, []).append(row)
    return list(out.items())


def flag_of(value: object) -> str | None:
    """A row's ``quality_issue``, or None (missing values of any kind)."""
    return value if isinstance(value, str) and value else None


def copy_images(pairs: dict[str, str], mode: str = "copy", workers: int = 8) -> int:
    """Copy (or symlink, local only) ``{source URI: target URI}``; returns how many."""
    if mode not in IMAGE_MODES:
        raise ValueError(f"unknown image mode {mode!r}; expected one of {', '.join(IMAGE_MODES)}")

    def one(item: tuple[str, str]) -> None:
        source, target = item
        if mode == "link":
            if not (storage.is_local(source) and storage.is_local(target)):
                raise ValueError(f"--images link needs local files, not {source} -> {target}")
            path = storage.local_path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            os.symlink(storage.local_path(source), path)
        else:
            storage.copy(source, target, link=False)  # a labelling tool may edit its images in place

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, pairs.items()))
    return len(pairs)


def write_files(files: dict[str, bytes], workers: int = 8) -> list[str]:
    """Write many small files (one per image) on a thread pool; returns their URIs."""
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(storage.write_bytes, files, files.values()))


def write_suggestions(data: ExportData, output_uri: str) -> str | None:
    """``label_issues.csv``: the objects the model found that no box covers, by exported image path."""
    suggestions = data.suggestions
    if not suggestions:
        return None
    image_path = dict(zip(data.table["image"], data.table["path"], strict=True))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image", "predicted_class", "score", "xmin", "ymin", "xmax", "ymax", "description"])
    for s in suggestions:
        box = [f"{v:.2f}" for v in s["predicted_box"]]
        writer.writerow(
            [
                image_path.get(s["image"], s["image"]),
                s["predicted_class"],
                f"{s['predicted_score']:.3f}",
                *box,
                s["description"],
            ]
        )
    return storage.write_text(storage.join(output_uri, SUGGESTIONS_CSV), buf.getvalue())


def box_text(value: float) -> str:
    """A coordinate as the exports write it: as many digits as it has, at most 10 significant."""
    return f"{value:.10g}"
