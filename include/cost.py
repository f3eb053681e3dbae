"""What a run costs: an upper bound before anything is launched, and what it used once it ran.

* **Estimate** (:func:`estimate`, checked by ``resolve_config`` against ``cost.max_usd``): the
  SageMaker requests' instance types and counts and their stopping conditions, priced from the
  configuration's table (region -> instance type -> USD per instance-hour): training =
  count x ``MaxRuntimeInSeconds``; tuning = ``max_jobs`` x that; the endpoint = count x
  (``keep_endpoint_minutes`` + ``cost.endpoint_minutes``). An upper bound: jobs usually end
  well before their limit. The local backend costs $0.
* **Actual** (written by teardown to ``<run>/cost.json``, summed per DAG run and added to
  ``report.html``): each step's CPU and wall seconds on this machine (:func:`metered`; child
  processes count once reaped, so a local training job's trainer is in its task's figure), the
  training job's ``BillableTimeInSeconds`` x instance count x price (spot savings shown as
  ``1 - billable / training time``; every trial of a tuning job), each endpoint's instance-hours
  from its creation (SageMaker's ``CreationTime``, a local endpoint's record) to its deletion by
  teardown (recorded in ``<run>/endpoint_hours.json``; an endpoint teardown keeps is counted to
  teardown and marked still running); a step reused from the cache costs what reusing it took.

Prices are examples to replace with the SageMaker pricing page's for your region; a type the
run uses but the table lacks is an error when ``cost.max_usd`` is set (the bound cannot be known),
and priced at nothing (with a warning) otherwise.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import resource
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from include import storage

if TYPE_CHECKING:
    from include.configs import PipelineConfig

log = logging.getLogger(__name__)

#: ``<run>/cost/<step>.json``: one record per step (mapped tasks: per map index); teardown sums them.
STEPS_DIR = "cost"
COST_JSON = "cost.json"
#: ``<run>/endpoint_hours.json``: the run's endpoints, each from its creation to its teardown (teardown writes it).
ENDPOINTS_JSON = "endpoint_hours.json"


class CostLimitError(ValueError):
    """The run's estimated cost exceeds ``cost.max_usd``; the message names the estimate's parts."""


@dataclass(frozen=True)
class Part:
    """One priced item: ``count`` instances of ``instance_type`` for ``hours`` each."""

    what: str
    instance_type: str
    count: int
    hours: float
    usd_per_hour: float | None

    @property
    def usd(self) -> float:
        return self.count * self.hours * (self.usd_per_hour or 0.0)

    def describe(self) -> str:
        price = f"${self.usd:.2f}" if self.usd_per_hour is not None else "no price in cost.prices"
        return f"{self.what} {self.instance_type} x{self.count} x {self.hours:.2f} h = {price}"


def price(cfg: PipelineConfig, instance_type: str) -> float | None:
    """USD per instance-hour of ``instance_type`` in the configured region (None: not in the table)."""
    return (cfg.cost.prices.get(cfg.sagemaker.region) or {}).get(instance_type)


def estimate(cfg: PipelineConfig) -> list[Part]:
    """The run's SageMaker spending at most, part by part (empty on the local backend)."""
    if cfg.backend != "sagemaker":
        return []
    sm = cfg.sagemaker
    runtime_h = sm.max_runtime_seconds / 3600
    jobs = cfg.training.tuning.max_jobs if cfg.training.tune else 1
    what = f"tuning ({jobs} jobs)" if cfg.training.tune else "training"
    parts = [Part(what, sm.training_instance_type, sm.training_instance_count * jobs, runtime_h,
                  price(cfg, sm.training_instance_type))]  # fmt: skip
    if cfg.deploy.enabled:
        minutes = cfg.deploy.keep_endpoint_minutes + cfg.cost.endpoint_minutes
        parts.append(Part("endpoint", sm.endpoint_instance_type, sm.endpoint_instance_count, minutes / 60,
                          price(cfg, sm.endpoint_instance_type)))  # fmt: skip
    return parts


def check_budget(cfg: PipelineConfig) -> list[Part]:
    """The estimate; raises :class:`CostLimitError` when it exceeds ``cost.max_usd`` or cannot be priced."""
    parts = estimate(cfg)
    unpriced = [p for p in parts if p.usd_per_hour is None]
    for part in unpriced:
        log.warning("cost: no price for %s in cost.prices.%s: estimated at $0", part.instance_type,
                    cfg.sagemaker.region)  # fmt: skip
    limit = cfg.cost.max_usd
    if limit is None:
        return parts
    total = sum(p.usd for p in parts)
    detail = "; ".join(p.describe() for p in parts)
    if unpriced:
        raise CostLimitError(
            f"cost.max_usd=${limit:.2f} is set but the estimate cannot be priced: {detail}; add the instance "
            f"types to cost.prices.{cfg.sagemaker.region}"
        )
    if total > limit:
        raise CostLimitError(
            f"estimated cost ${total:.2f} exceeds cost.max_usd=${limit:.2f}: {detail} (upper bounds from "
            "StoppingCondition.MaxRuntimeInSeconds, the tuning job count and keep_endpoint_minutes + "
            "cost.endpoint_minutes); nothing was launched"
        )
    log.info("cost: estimated at most $%.2f (cost.max_usd=$%.2f): %s", total, limit, detail)
    return parts


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@contextlib.contextmanager
def metered(run_root: str, step: str) -> Iterator[None]:
    """Record the CPU seconds (this process and its reaped children) and wall seconds of the block under
    ``<run_root>/cost/<step>.json``, also when it fails (what a failed step used was spent)."""
    cpu, wall = _cpu_seconds(), time.monotonic()
    failed = True
    try:
        yield
        failed = False
    finally:
        record = {"step": step, "cpu_seconds": round(_cpu_seconds() - cpu, 3),
                  "wall_seconds": round(time.monotonic() - wall, 3), "failed": failed}  # fmt: skip
        try:
            storage.write_text(storage.join(run_root, STEPS_DIR, f"{step}.json"), json.dumps(record))
        except Exception:  # recording a cost never fails the step
            log.warning("cost: could not record step %s", step, exc_info=True)


def training_job_cost(cfg: PipelineConfig, description: Mapping[str, Any], reused: bool = False) -> dict[str, Any]:
    """A training job's billable seconds and price from its DescribeTrainingJob answer (a local record: $0).

    ``reused``: the job is an earlier run's, taken from the cache: this run paid nothing for it.
    """
    resources = description.get("ResourceConfig") or {}
    count = int(resources.get("InstanceCount") or 1)
    instance = resources.get("InstanceType") or "?"
    training = float(description.get("TrainingTimeInSeconds") or 0)
    billable = float(description.get("BillableTimeInSeconds") or training)
    local = instance == "local"
    hourly = None if local else price(cfg, instance)
    out: dict[str, Any] = {
        "job_name": description.get("TrainingJobName"),
        "instance_type": instance,
        "instance_count": count,
        "training_seconds": training,
        "billable_seconds": 0.0 if (reused or local) else billable * count,
        "usd": 0.0 if (reused or local or hourly is None) else round(billable * count * hourly / 3600, 4),
        "reused": reused,
    }
    if training and billable < training:
        out["spot_savings_pct"] = round((1 - billable / training) * 100, 1)
    if local:
        out["cpu_seconds"] = (description.get("Timings") or {}).get("train_cpu_seconds")
    return out


def endpoint_cost(cfg: PipelineConfig, lifetime: Mapping[str, Any]) -> dict[str, Any]:
    """An endpoint's instance-hours from its creation to its deletion (``lifetime``: :func:`endpoint_lifetime`),
    priced (a local endpoint: $0)."""
    created, ended = (dt.datetime.fromisoformat(lifetime[k]) for k in ("created", "ended"))
    hours = max((ended - created).total_seconds(), 0) / 3600
    local = lifetime["instance_type"] == "local"
    part = Part("endpoint", lifetime["instance_type"], int(lifetime["instance_count"]), hours,
                None if local else price(cfg, lifetime["instance_type"]))  # fmt: skip
    return {**lifetime, "hours": round(hours, 4), "instance_hours": round(hours * part.count, 4),
            "usd": round(part.usd, 4)}  # fmt: skip


def endpoint_lifetime(name: str, instance_type: str, count: int, created: dt.datetime, ended: dt.datetime,
                      still_running: bool = False) -> dict[str, Any]:  # fmt: skip
    """One endpoint's life as teardown records it (aware datetimes as ISO strings)."""
    return {"endpoint_name": name, "instance_type": instance_type, "instance_count": count,
            "created": created.isoformat(), "ended": ended.isoformat(), "still_running": still_running}  # fmt: skip


def record_endpoint_lifetimes(run_root: str, lifetimes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``lifetimes`` to ``<run>/endpoint_hours.json`` (a retried teardown keeps what an earlier try recorded
    of endpoints now gone; an endpoint recorded again replaces its record); every record."""
    uri = storage.join(run_root, ENDPOINTS_JSON)
    known = {e["endpoint_name"]: e for e in json.loads(storage.read_text(uri))} if storage.exists(uri) else {}
    known.update({e["endpoint_name"]: e for e in lifetimes})
    records = sorted(known.values(), key=lambda e: e["created"])
    storage.write_text(uri, json.dumps(records, indent=2))
    return records


def recorded_endpoint_lifetimes(run_root: str) -> list[dict[str, Any]]:
    """What teardown recorded in ``<run>/endpoint_hours.json`` (nothing before teardown)."""
    uri = storage.join(run_root, ENDPOINTS_JSON)
    return json.loads(storage.read_text(uri)) if storage.exists(uri) else []


def summarize(cfg: PipelineConfig, run_root: str, jobs: list[Mapping[str, Any]],
              endpoints: list[Mapping[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """The run's cost: every step's record, the jobs and endpoints, totals; written to ``<run>/cost.json``."""
    folder = storage.join(run_root, STEPS_DIR)
    steps = [json.loads(storage.read_text(uri)) for uri in storage.walk_files(folder)] if storage.exists(folder) else []
    steps.sort(key=lambda s: s["step"])
    usd = sum(j.get("usd", 0.0) for j in jobs) + sum(e.get("usd", 0.0) for e in endpoints)
    summary = {
        "backend": cfg.backend,
        "region": cfg.sagemaker.region if cfg.backend == "sagemaker" else None,
        "currency": "USD",
        "usd": round(usd, 4),
        "billable_seconds": sum(j.get("billable_seconds", 0.0) for j in jobs),
        "endpoint_hours": round(sum(e.get("instance_hours", 0.0) for e in endpoints), 4),
        "cpu_seconds": round(sum(s["cpu_seconds"] for s in steps), 3),
        "steps": steps,
        "jobs": jobs,
        "endpoints": endpoints,
        "estimate": [{**asdict(p), "usd": round(p.usd, 4)} for p in estimate(cfg)],
    }
    storage.write_text(storage.join(run_root, COST_JSON), json.dumps(summary, indent=2))
    return summary
