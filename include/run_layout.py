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
