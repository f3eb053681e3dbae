"""The canonical annotation table: one row per bounding box.

Every ingest format produces this table and every later output (.lst, .rec, manifests,
quality reports, evaluation) is built from it. It is stored as ``annotations.parquet``
next to ``classes.json`` (``{"0": "name", ...}``, ids 0-based and consecutive).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from include import storage
from include.run_layout import CLASSES_FILE

if TYPE_CHECKING:
    import pandas as pd

ANNOTATIONS_FILE = "annotations.parquet"

#: column -> pandas dtype, in table order.
COLUMNS: dict[str, str] = {
    "image": "string",  # path relative to the data set root, '/' separated (the .lst path)
    "image_uri": "string",  # absolute URI of the image file
    "width": "int64",  # pixels, from the image itself after verification
    "height": "int64",
    "depth": "int64",
    "class_id": "int64",  # 0-based, consecutive after subsetting
    "class_name": "string",
    "xmin": "float64",  # pixels, origin top-left
    "ymin": "float64",
    "xmax": "float64",
    "ymax": "float64",
    "xmin_norm": "float64",  # xmin / width, etc.
    "ymin_norm": "float64",
    "xmax_norm": "float64",
    "ymax_norm": "float64",
    "split": "string",  # 'train', 'validation' or 'test'
    "source_file": "string",  # annotation file the box came from
    "source_line": "int64",  # 1-based line (text, JSON Lines, XML) or object number (image+JSON)
}

#: train fits the model, validation selects its epoch (and tuning trial), test is held out for evaluation
#: and the promotion gate. Training needs the first two; a data set may come without test images.
SPLITS = ("train", "validation", "test")
TRAINING_SPLITS = ("train", "validation")


def empty_table() -> pd.DataFrame:
    """A table with the canonical columns and no rows."""
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS.items()})


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with the canonical columns in order and dtypes; extra columns are kept after them.

    Raises ``ValueError`` naming the missing columns.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"annotation table is missing columns: {', '.join(missing)}")
    extra = [c for c in df.columns if c not in COLUMNS]
    out = df[list(COLUMNS) + extra].copy()
    return out.astype(COLUMNS)


def add_normalized(df: pd.DataFrame) -> pd.DataFrame:
    """Fill the ``*_norm`` columns from the pixel boxes and image sizes."""
    df = df.copy()
    for col, size in (("xmin", "width"), ("xmax", "width"), ("ymin", "height"), ("ymax", "height")):
        df[f"{col}_norm"] = df[col] / df[size].where(df[size] > 0)
    return df


def write_table(df: pd.DataFrame, classes: dict[int, str], output_uri: str) -> dict[str, str]:
    """Write ``annotations.parquet`` and ``classes.json`` under ``output_uri`` atomically."""
    table_uri = storage.join(output_uri, ANNOTATIONS_FILE)
    classes_uri = storage.join(output_uri, CLASSES_FILE)
    buf = io.BytesIO()
    conform(df).to_parquet(buf, index=False)
    storage.write_bytes(table_uri, buf.getvalue())
    storage.write_text(classes_uri, json.dumps({str(k): v for k, v in sorted(classes.items())}, indent=2))
    return {"annotations": table_uri, "classes": classes_uri}


def read_table(input_uri: str) -> pd.DataFrame:
    """Read ``annotations.parquet`` from a folder URI (or the file URI itself)."""
    import pandas as pd

    uri = input_uri if input_uri.endswith(".parquet") else storage.join(input_uri, ANNOTATIONS_FILE)
    with storage.open_read(uri) as fh:
        return conform(pd.read_parquet(fh))


def read_columns(input_uri: str, columns: Sequence[str]) -> dict[str, list[Any]]:
    """``columns`` of ``annotations.parquet`` as plain Python lists (missing values: None), in table order.

    Reads with pyarrow only: the RecordIO plan does not pay pandas' import. Raises ``ValueError``
    naming the missing columns.
    """
    import pyarrow.parquet as pq

    uri = input_uri if input_uri.endswith(".parquet") else storage.join(input_uri, ANNOTATIONS_FILE)
    with storage.open_read(uri) as fh:
        table = pq.ParquetFile(fh).read()  # not pq.read_table: its dataset module imports pandas
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"{uri}: annotation table is missing columns: {', '.join(missing)}")
    return {c: table.column(c).to_pylist() for c in columns}


def read_classes(input_uri: str) -> dict[int, str]:
    """Read ``classes.json`` as ``{id: name}`` from a folder URI, the file's own URI, or its table's."""
    folder = input_uri.rsplit("/", 1)[0] if input_uri.endswith(".parquet") else input_uri
    uri = input_uri if input_uri.endswith(".json") else storage.join(folder, CLASSES_FILE)
    return {int(k): v for k, v in json.loads(storage.read_text(uri)).items()}
