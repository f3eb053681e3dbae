"""The .lst lines planned from the canonical table: format, order, flips, label width, bad rows."""

from __future__ import annotations

import numpy as np
import pytest

from include.preprocess import lst
from include.preprocess.annotations import read_columns, write_table
from tests.support.recordio_data import expected_records


def lines_of(table, flip: str) -> dict[str, list[str]]:
    return {
        split: [lst.lst_line(i, r) for i, r in enumerate(records)]
        for split, records in lst.plan_records(table, flip).items()
    }


@pytest.mark.parametrize("flip", ["train", "none", "all"])
def test_lst_lines_reproduce_the_table(bccd, flip):
    expected = expected_records(bccd.table, flip)
    for split, lines in lines_of(bccd.table, flip).items():
        assert len(lines) == len(expected[split])
        for i, (line, (path, boxes)) in enumerate(zip(lines, expected[split], strict=True)):
            assert line.endswith("\n") and "\n" not in line[:-1]
            fields = line[:-1].split("\t")
            assert fields[0] == str(i) and fields[1:3] == ["2", "5"] and fields[-1] == path
            coords = fields[3:-1]
            assert len(coords) == 5 * len(boxes)
            assert all(len(v.split(".")[1]) == 6 for k, v in enumerate(coords) if k % 5)
            np.testing.assert_allclose(np.array(coords, dtype=float).reshape(-1, 5), boxes, atol=1e-6)


def test_flipped_copy_mirrors_pixel_boxes(synthetic):
    records = lst.plan_records(synthetic.table, "train")["train"]
    original, flipped = records[0], records[1]
    assert (original.flipped, flipped.flipped, flipped.path) == (False, True, "flipped/" + original.path)
    for a, b in zip(original.boxes, flipped.boxes, strict=True):
        w = original.width
        assert (b.class_id, b.ymin, b.ymax) == (a.class_id, a.ymin, a.ymax)
        assert b.xmin == w - (a.xmax - a.xmin) - a.xmin and b.xmax - b.xmin == a.xmax - a.xmin


def test_parse_lst_line_reads_what_lst_line_writes(synthetic):
    record = lst.plan_records(synthetic.table, "none")["validation"][0]
    record_id, label, path = lst.parse_lst_line(lst.lst_line(7, record))
    assert (record_id, path, label[:2]) == (7, record.path, [2.0, 5.0])
    assert len(label) == 2 + 5 * len(record.boxes)
    with pytest.raises(lst.AnnotationTableError, match="x.lst:3"):
        lst.parse_lst_line("1\tabc\timg.jpg\n", "x.lst:3")


def test_required_label_width_and_error_names_the_image(bccd):
    counts = bccd.table.groupby("image").size()
    assert lst.required_label_width(bccd.table) == 2 + 5 * counts.max()
    assert lst.check_label_width(bccd.table, 2 + 5 * counts.max()) == 2 + 5 * counts.max()
    with pytest.raises(lst.LabelWidthError) as err:
        lst.check_label_width(bccd.table, 1 + 5 * counts.max())
    message = str(err.value)
    assert counts.idxmax() in message and f"{counts.max()} objects" in message
    assert f">= {2 + 5 * counts.max()}" in message
    assert isinstance(err.value, ValueError)


def test_bad_rows_are_named(synthetic, tmp_path):
    table = synthetic.table.copy()
    table.loc[2, "xmax_norm"] = float("nan")
    with pytest.raises(lst.AnnotationTableError, match=r"synthetic.csv:3 \(image birds/b.jpg\).*non-finite"):
        lst.plan_records(table, "train")
    write_table(table, synthetic.classes, str(tmp_path / "t"))  # the same row read back without pandas
    columns = read_columns(str(tmp_path / "t"), lst.COLUMNS)
    assert columns["xmax_norm"][2] is None
    with pytest.raises(lst.AnnotationTableError, match=r"synthetic.csv:3 \(image birds/b.jpg\).*non-finite"):
        lst.plan_records(columns, "train")
    with pytest.raises(ValueError, match=r"annotations.parquet: annotation table is missing columns: nope"):
        read_columns(str(tmp_path / "t"), ["image", "nope"])
    table = synthetic.table.copy()
    table.loc[table.index[-1], "width"] = 999
    with pytest.raises(lst.AnnotationTableError, match="size differ"):
        lst.plan_records(table, "train")
    table = synthetic.table.copy()
    table.loc[0, "split"] = "holdout"
    with pytest.raises(lst.AnnotationTableError, match="split 'holdout'"):
        lst.plan_records(table, "train")
    with pytest.raises(ValueError, match="flip must be one of"):
        lst.plan_records(synthetic.table, "yes")
