"""The pipeline's stages as plain functions of a run context.

The Airflow DAG's tasks and the ``detection-pipeline run`` command both call these, so a
stage does the same thing in both. Each takes a :class:`RunContext` (validated config plus the
run's folder layout) and earlier stages' small summaries, and returns a small JSON-able summary
(URIs and counts, never data) that Airflow keeps in XCom.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from include.configs import PipelineConfig, load_config
from include.run_layout import RunLayout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunContext:
    """Everything a stage needs to know about its run."""

    config: PipelineConfig
    layout: RunLayout
    dag_id: str
    run_id: str
    try_number: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "layout": self.layout.as_dict(),
            "dag_id": self.dag_id,
            "run_id": self.run_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], try_number: int = 1) -> RunContext:
        """Rebuild the context a ``resolve_config`` task returned (the config was validated there)."""
        return cls(
            config=PipelineConfig.model_validate(data["config"]),
            layout=RunLayout(**data["layout"]),
            dag_id=data["dag_id"],
            run_id=data["run_id"],
            try_number=try_number,
        )


def resolve(params: dict[str, Any], dag_id: str, run_id: str, try_number: int = 1) -> RunContext:
    """Validate the configuration with ``params`` applied and lay out the run's folders."""
    cfg = load_config(params=params)
    layout = RunLayout.create(cfg.storage.base_uri or "", dag_id, run_id)
    log.info("backend=%s storage=%s", cfg.backend, layout.root)
    return RunContext(cfg, layout, dag_id, run_id, try_number)


def ingest(ctx: RunContext) -> dict[str, Any]:
    """Read the data set into the canonical table (generating the sample data set when asked)."""
    from include.preprocess.ingest import ingest as run_ingest

    ds = ctx.config.dataset
    source = ds.source
    if source == "sample":
        from include.preprocess.sample_data import generate_sample
        from include.storage import local_path

        source = str(generate_sample(local_path(ctx.layout.dataset), n_images=ds.sample_images, seed=ds.seed))
    return run_ingest(
        ds.format,
        source,
        ctx.layout.ingest,
        classes=ds.classes or None,
        label_attribute=ds.label_attribute,
        validation_fraction=ds.validation_fraction,
        seed=ds.seed,
        image_policy=ds.image_policy,
    )


def validate(ctx: RunContext) -> dict[str, Any]:
    """The bounding-box quality gate on the ingested table."""
    from include.preprocess.quality import validate as run_validate

    q = ctx.config.quality
    return run_validate(
        ctx.layout.ingest,
        ctx.layout.quality,
        policy=q.policy,
        label_width=int(ctx.config.training.hyperparameters.get("label_width", 350)),
        min_box_side=q.min_box_side,
        tolerance=q.tolerance,
    )


def plan_recordio(ctx: RunContext) -> list[dict[str, Any]]:
    """Shard specs for the RecordIO build (one mapped task each)."""
    from include.preprocess.recordio import plan_shards

    r = ctx.config.recordio
    return plan_shards(ctx.layout.quality, ctx.layout.recordio, r.shards, **_recordio_options(ctx))


def _recordio_options(ctx: RunContext) -> dict[str, Any]:
    r = ctx.config.recordio
    return {
        "resize": r.resize,
        "quality": r.quality,
        "flip": r.flip,
        "label_width": int(ctx.config.training.hyperparameters.get("label_width", 350)),
    }


def build_recordio_shard(spec: dict[str, Any]) -> dict[str, Any]:
    """Build one shard's records."""
    from include.preprocess.recordio import build_shard

    return build_shard(spec)


def merge_recordio(ctx: RunContext, shard_results: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge the shards into the train/ and validation/ channels and recordio.json."""
    from include.preprocess.recordio import merge_shards

    return merge_shards(ctx.layout.recordio, list(shard_results))


def build_recordio(ctx: RunContext) -> dict[str, Any]:
    """The whole RecordIO build in one call (the CLI's ``run``)."""
    specs = plan_recordio(ctx)
    return merge_recordio(ctx, [build_recordio_shard(spec) for spec in specs])
