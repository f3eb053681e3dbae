"""Where a run's files live: ``<storage base URI>/<dag id>/<run id>/<stage>/``, and the names of
the files one stage hands to another (defined here once, read by every stage that needs them)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from include import storage

STAGES = ("dataset", "ingest", "quality", "recordio", "training", "evaluation", "export", "deploy")

#: The class map (``{"0": "name", ...}``) beside a table, a RecordIO build and inside a model archive.
CLASSES_FILE = "classes.json"
#: The quality gate's report, which later stages check passed.
QUALITY_JSON = "quality.json"
#: The RecordIO build's summary (records, checksums, label width needed).
RECORDIO_SUMMARY = "recordio.json"
#: The trained model, where SageMaker puts it: ``<output path>/<job>/output/model.tar.gz``.
MODEL_ARCHIVE = "model.tar.gz"
#: A training job's DescribeTrainingJob-shaped record and its log of metric lines.
TRAINING_JSON = "training.json"
TRAINING_LOG = "training.log"
#: A tuning job's DescribeHyperParameterTuningJob-shaped record.
TUNING_JSON = "tuning.json"
#: The export stage's record: the ONNX file (sha256, parity with MXNet) and Neo's compiled model.
EXPORT_JSON = "export.json"
#: The boxes the quality gate dropped (the input table's columns plus ``quality_issue``), which export hands back.
QUARANTINE_TABLE = "quarantine.parquet"
#: Evaluation's ranked label issues of the validation split, which export turns into flags.
LABEL_ISSUES_JSON = "label_issues.json"

# --- batch transform (CreateTransformJob) output, on both backends ---------------------------------
#: SageMaker's suffix of a transform's output: ``<S3OutputPath>/<path relative to the input prefix>.out``,
#: each holding the endpoint's JSON answer (``{"prediction": [[class, score, xmin, ymin, xmax, ymax], ...]}``).
TRANSFORM_OUTPUT_SUFFIX = ".out"
#: The record of an input that could not be scored, beside where its ``.out`` would be:
#: ``<output>/<relative path>.error.json`` holding ``{"input", "error", "type"}``.
TRANSFORM_ERROR_SUFFIX = ".error.json"
#: The transform's DescribeTransformJob-shaped record with ``Counts`` (``inputs``, ``outputs``, ``errors``), at the
#: output's top.
TRANSFORM_JSON = "transform.json"
#: The manifest of the images sent on the sagemaker backend (those the pre-flight could decode), at the output's top.
TRANSFORM_MANIFEST = "transform.manifest"
#: A batch_inference run's folders under its run root: the transform output and the pre-labels made from it.
TRANSFORM_FOLDER = "transform"
PRELABELS_FOLDER = "prelabels"


def safe_id(text: str) -> str:
    """A run or DAG id made safe for file names and S3 keys (``:``/``+`` and the like become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


@dataclass(frozen=True)
class RunLayout:
    """The URIs of one run's stage folders (all under :attr:`root`)."""

    root: str
    dataset: str
    ingest: str
    quality: str
    recordio: str
    training: str
    evaluation: str
    export: str
    deploy: str

    @classmethod
    def create(cls, base_uri: str, dag_id: str, run_id: str) -> RunLayout:
        root = storage.join(base_uri, safe_id(dag_id), safe_id(run_id))
        return cls(root=root, **{stage: storage.join(root, stage) for stage in STAGES})

    def as_dict(self) -> dict[str, str]:
        return asdict(self)
