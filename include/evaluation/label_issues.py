"""Label errors the trained model points at: cleanlab's object-detection ranking of the split evaluation scores.

That split is the held-out test split (validation when the build has none): the model never
trained on it, and cleanlab needs out-of-sample predictions. The model's detections on its
images and the labels go to ``cleanlab.object_detection``:
``rank.get_label_quality_scores`` scores every image (low: likely wrong), ``rank.issues_from_scores``
flags those under :data:`FLAG_SCORE`, and the per-box scores say which box and why: a *missing box* (a confident
detection no label covers: ``compute_overlooked_box_scores``, per predicted box), a *wrong class*
(``compute_swap_box_scores``) or a *badly placed box* (``compute_badloc_box_scores``, per label box).
Detections scoring under :data:`PRUNE_SCORE` are left out first: cleanlab then runs 3-4x faster with
the same results (measured on 100 BCCD images, 93 detections each). Both sets are in the network
input's pixels, the frame the metric uses.

Not ``filter.find_label_issues``: it computes per-class AP thresholds in a ``multiprocessing.Pool``
that it forks even for one process, and a fork inside an Airflow task (a process with threads)
deadlocked in the pool's queue lock (seen in a ``dag.test`` run).

What it does not promise: cleanlab scores a missing box only where a detection of 0.95 or more
overlaps no label at all, so in crowded images (BCCD's overlapping red cells) missing boxes are
rarely found; displaced boxes and swapped classes are.

Each record is mapped back to its rows of the gated table through its ``.lst`` name
(:mod:`include.evaluation.channel_data`) and ``recordio.json``'s table, so an issue names the annotation file and
line, and its thumbnail is drawn on the original image. ``label_issues.json`` lists every issue,
``detection-pipeline export --label-issues`` turns them into flags for relabelling.
"""

from __future__ import annotations

import contextlib
import html
import io
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from include import storage
from include.preprocess.lst import FLIPPED_PREFIX
from include.reports.figures import Picture
from include.reports.thumbnails import HIGHLIGHT, Mark, draw, load, to_jpeg

log = logging.getLogger(__name__)

PRUNE_SCORE = 0.1
FLAG_SCORE = 0.1  # issues_from_scores' default threshold
LIKELY = 0.1  # a box score this low is an issue in any image; each ranked image also shows its worst box
MODEL_COLOR = "#00a2c7"
KINDS = {"overlooked": "missing box", "swap": "wrong class", "badloc": "badly placed box"}


@dataclass(frozen=True)
class Record:
    """One record of the scored channel: its image's name (the ``.lst`` path), the model's detections ``[N, 6]``
    and the ground truth ``[M, 5]``, normalized."""

    source: str
    index: int
    name: str
    detections: np.ndarray
    truth: np.ndarray


def _cleanlab_inputs(records: list[Record], n_classes: int, frame: int) -> tuple[list[dict], list[list[np.ndarray]]]:
    labels, predictions = [], []
    for r in records:
        truth = r.truth[r.truth[:, 0] >= 0]
        labels.append({"bboxes": truth[:, 1:5] * frame, "labels": truth[:, 0].astype(int)})
        kept = r.detections[(r.detections[:, 0] >= 0) & (r.detections[:, 1] >= PRUNE_SCORE)]
        predictions.append(
            [
                np.column_stack([kept[kept[:, 0] == k][:, 2:6] * frame, kept[kept[:, 0] == k][:, 1]]).reshape(-1, 5)
                for k in range(n_classes)
            ]
        )
    return labels, predictions


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x1, y1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return inter / np.where(union > 0, union, np.inf)


def _box_issues(record: Record, scores: dict[str, np.ndarray], classes: dict[int, str]) -> list[dict[str, Any]]:
    """Every scored box of one image: ``{kind, score, label index or None, predicted row}``, worst first."""
    truth = record.truth[record.truth[:, 0] >= 0]
    kept = record.detections[(record.detections[:, 0] >= 0) & (record.detections[:, 1] >= PRUNE_SCORE)]
    by_class = np.concatenate([kept[kept[:, 0] == k] for k in range(len(classes))]).reshape(-1, 6)
    out = []
    for kind in ("swap", "badloc"):
        for k, score in enumerate(scores[kind]):
            if np.isnan(score):
                continue
            overlap = _iou(truth[k, 1:5], by_class[:, 2:6]) if len(by_class) else np.zeros(0)
            same = by_class[:, 0] == truth[k, 0]
            pool = overlap * (same if kind == "badloc" else ~same)
            predicted = by_class[int(np.argmax(pool))] if len(pool) and pool.max() > 0 else None
            out.append({"kind": kind, "score": float(score), "label": k, "predicted": predicted})
    for j, score in enumerate(scores["overlooked"]):
        if not np.isnan(score):
            out.append({"kind": "overlooked", "score": float(score), "label": None, "predicted": by_class[j]})
    return sorted(out, key=lambda i: i["score"])


def cleanlab_scores(records: list[Record], classes: dict[int, str], frame: int) -> list[dict[str, Any]]:
    """Per image (record order): its quality score, whether cleanlab flags it, and its scored boxes."""
    from cleanlab.object_detection import rank

    labels, predictions = _cleanlab_inputs(records, len(classes), frame)
    with contextlib.redirect_stdout(io.StringIO()):  # cleanlab prints its pruning
        image_scores = rank.get_label_quality_scores(labels, predictions)
        flagged = np.zeros(len(records), dtype=bool)
        flagged[rank.issues_from_scores(image_scores, threshold=FLAG_SCORE)] = True
        per_box = {
            "overlooked": rank.compute_overlooked_box_scores(labels=labels, predictions=predictions),
            "swap": rank.compute_swap_box_scores(labels=labels, predictions=predictions),
            "badloc": rank.compute_badloc_box_scores(labels=labels, predictions=predictions),
        }
    return [
        {
            "score": float(image_scores[i]),
            "flagged": bool(flagged[i]),
            "boxes": _box_issues(r, {kind: per_box[kind][i] for kind in per_box}, classes),
        }
        for i, r in enumerate(records)
    ]


def _table_rows(table_uri: str | None) -> dict[str, list[dict[str, Any]]]:
    """The gated table's rows per image, in table order (the order of a record's boxes)."""
    from include.preprocess.annotations import read_table

    if not table_uri or not storage.exists(storage.join(table_uri, "annotations.parquet")):
        return {}
    columns = [
        "image",
        "image_uri",
        "width",
        "height",
        "source_file",
        "source_line",
        "class_name",
        "xmin",
        "ymin",
        "xmax",
        "ymax",
    ]
    out: dict[str, list[dict[str, Any]]] = {}
    for row in read_table(table_uri)[columns].to_dict("records"):
        out.setdefault(row["image"], []).append(row)
    return out


def _describe(issue: dict[str, Any], label: str | None, classes: dict[int, str]) -> str:
    predicted = issue["predicted"]
    model = f"{classes.get(int(predicted[0]), predicted[0])} {predicted[1]:.2f}" if predicted is not None else None
    kind = KINDS[issue["kind"]]
    if issue["kind"] == "overlooked":
        return f"{kind}: the model finds {model} where no box is (score {issue['score']:.3f})"
    if issue["kind"] == "swap":
        said = f"; the model says {model}" if model else ""
        return f"{kind}: labelled {label}{said} (score {issue['score']:.3f})"
    said = f"; the model's {label} box differs ({model})" if model else ""
    return f"{kind}: {label}{said} (score {issue['score']:.3f})"


def find_label_issues(
    records: list[Record], classes: dict[int, str], frame: int, table_uri: str | None, shown: int, split: str = "test"
) -> dict[str, Any]:
    """``label_issues.json``'s content: the images ranked worst first, each issue with its source and boxes.

    Issues are listed for every image cleanlab flags and the ``shown`` lowest-scored ones: each
    image's worst box, and any box scored under :data:`LIKELY`. Boxes are in the original image's
    pixels where the table maps the record, else normalized.
    """
    ranked = cleanlab_scores(records, classes, frame)
    rows = _table_rows(table_uri)
    order = sorted(range(len(records)), key=lambda i: ranked[i]["score"])
    chosen = [i for n, i in enumerate(order) if n < shown or ranked[i]["flagged"]]
    issues = []
    for rank_, i in enumerate(chosen, start=1):
        record, result = records[i], ranked[i]
        image = record.name
        table = rows.get(image, [])
        truth = record.truth[record.truth[:, 0] >= 0]
        mapped = len(table) == len(truth) and not image.startswith(FLIPPED_PREFIX)
        size = (table[0]["width"], table[0]["height"]) if mapped else (1, 1)
        for n, issue in enumerate(result["boxes"]):
            if n and issue["score"] >= LIKELY:
                break
            k, predicted = issue["label"], issue["predicted"]
            label = classes.get(int(truth[k, 0])) if k is not None else None
            source = table[k] if mapped and k is not None else {}
            issues.append(
                {
                    "rank": rank_,
                    "image": image,
                    "image_uri": table[0]["image_uri"] if mapped else None,
                    "record": [record.source, record.index],
                    "image_score": round(result["score"], 4),
                    "flagged_by_cleanlab": result["flagged"],
                    "kind": KINDS[issue["kind"]],
                    "score": round(issue["score"], 4),
                    "description": _describe(issue, label, classes),
                    "source_file": source.get("source_file"),
                    "source_line": source.get("source_line"),
                    "class_name": label,
                    "box": _scaled(truth[k, 1:5], size) if k is not None else None,
                    "predicted_class": classes.get(int(predicted[0])) if predicted is not None else None,
                    "predicted_score": round(float(predicted[1]), 4) if predicted is not None else None,
                    "predicted_box": _scaled(predicted[2:6], size) if predicted is not None else None,
                    "box_units": "px" if mapped else "fraction",
                }
            )
    return {
        "method": "cleanlab.object_detection (get_label_quality_scores, issues_from_scores, per-box scores)",
        "split": split,
        "images": len(records),
        "images_flagged": int(sum(r["flagged"] for r in ranked)),
        "pruned_below_score": PRUNE_SCORE,
        "table": table_uri,
        "issues": issues,
    }


def _scaled(box: np.ndarray, size: tuple[float, float]) -> list[float]:
    w, h = size
    return [round(float(v), 2 if w > 1 else 6) for v in (box[0] * w, box[1] * h, box[2] * w, box[3] * h)]


def _record_images(channel_uri: str, needed: set[tuple[str, int]]) -> dict[tuple[str, int], np.ndarray]:
    """Decoded images of the ``needed`` records (issues with no original image file to draw on)."""
    from include.evaluation.channel_data import read_channel

    out: dict[tuple[str, int], np.ndarray] = {}
    if needed:
        for item in read_channel(channel_uri):
            if (item.source, item.index) in needed:
                out[(item.source, item.index)] = item.image
                if len(out) == len(needed):
                    break
    return out


def draw_issues(document: dict[str, Any], shown: int, channel_uri: str) -> dict[int, Picture]:
    """The ``shown`` worst images drawn with their issues (labelled boxes red, the model's blue), by rank.

    Records the table does not map are drawn on the record's own (resized) image.
    """
    by_rank: dict[int, list[dict[str, Any]]] = {}
    for issue in document["issues"]:
        if issue["rank"] <= shown:
            by_rank.setdefault(issue["rank"], []).append(issue)
    records = _record_images(channel_uri, {tuple(i[0]["record"]) for i in by_rank.values() if not i[0]["image_uri"]})
    pictures = {}
    for rank_, issues in by_rank.items():
        first = issues[0]
        try:
            if first["image_uri"]:
                pixels, width, height = load(first["image_uri"])
            else:
                pixels = records[tuple(first["record"])]
                height, width = pixels.shape[:2]
        except (OSError, KeyError, ValueError):
            continue
        scale = (1.0, 1.0) if first["box_units"] == "px" else (width, height)
        marks = []
        for issue in issues:
            for key, color in (("box", HIGHLIGHT), ("predicted_box", MODEL_COLOR)):
                if issue[key]:
                    x0, y0, x1, y1 = issue[key]
                    predicted = f"{issue['predicted_class']} {issue['predicted_score']:.2f}"
                    label = issue["class_name"] if key == "box" else predicted
                    box = (x0 * scale[0], y0 * scale[1], x1 * scale[0], y1 * scale[1])
                    marks.append(Mark(box, color, 2, label or ""))
        pictures[rank_] = Picture(f"label issues of {first['image']}", to_jpeg(draw(pixels, (width, height), marks)))
    return pictures


def _where(issue: dict[str, Any]) -> str:
    return f"{issue['source_file']}:{issue['source_line']}" if issue["source_file"] else ""


def report_section(document: dict[str, Any], pictures: dict[int, Picture]) -> str:
    """The report's HTML: each drawn image beside its issues, their descriptions, files and lines."""
    e = html.escape
    shown = [i for i in document["issues"] if i["rank"] in pictures]
    count = {rank_: sum(i["rank"] == rank_ for i in shown) for rank_ in pictures}
    rows, seen = [], set()
    for issue in shown:
        rank_ = issue["rank"]
        cell = ""
        if rank_ not in seen:
            seen.add(rank_)
            picture = pictures[rank_]
            cell = (
                f'<td rowspan="{count[rank_]}" class="n">{rank_}</td><td rowspan="{count[rank_]}">'
                f"{e(issue['image'])}<br>score {issue['image_score']:.3f}<br>"
                f'<img src="{picture.data_uri()}" alt="{e(picture.title)}"></td>'
            )
        rows.append(
            f"<tr>{cell}<td>{e(issue['kind'])}</td><td>{e(issue['description'])}</td>"
            f"<td><code>{e(_where(issue))}</code></td></tr>"
        )
    head = "<tr><th>rank</th><th>image</th><th>issue</th><th>what</th><th>file:line</th></tr>"
    more = len(document["issues"]) - len(shown)
    intro = (
        f'<p class="muted">cleanlab ranked the {document["images"]} {document["split"]} images by label quality '
        f"from the model's detections and flagged {document['images_flagged']}; the {len(pictures)} worst are "
        f"drawn (red: the label, blue: the model). {f'{more} more issues are' if more > 0 else 'Every issue is'} in "
        "label_issues.json; <code>detection-pipeline export --label-issues</code> flags them for relabelling. "
        "Missing boxes in crowded images are rarely found (cleanlab needs a confident detection that overlaps no "
        "label).</p>"
    )
    return f"{intro}<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"
