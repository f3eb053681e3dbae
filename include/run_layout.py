"""Where a run's files live: ``<storage base URI>/<dag id>/<run id>/<stage>/``."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from include import storage

STAGES = ("dataset", "ingest", "quality", "recordio", "training", "evaluation", "deploy")


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
    deploy: str

    @classmethod
    def create(cls, base_uri: str, dag_id: str, run_id: str) -> RunLayout:
        root = storage.join(base_uri, safe_id(dag_id), safe_id(run_id))
        return cls(root=root, **{stage: storage.join(root, stage) for stage in STAGES})

    def as_dict(self) -> dict[str, str]:
        return asdict(self)
