"""Retries that re-attach: a retried task finds its run's job instead of failing on the name or paying twice.

A job is named from the run (:mod:`include.sagemaker.naming`): the first is ``<name>``, one started
after a failure ``<name>-t<try>``. Before starting anything a task looks for the run's newest job
(``<name>``, then ``<name>-t2``, ``<name>-t3`` ... while they exist) and decides:

* **in progress**: re-attach and wait for it (the operators defer on it as on a job they created);
* **completed** (for a job that stopped at its runtime limit with a model: stopped, with one): take its result;
* **failed, stopped or stopping**: start a new job named for this try. ``Stopping`` is not waited for:
  a killed task's ``on_kill`` puts its job there, and the user meant it.

The same decision serves SageMaker (DescribeTrainingJob / DescribeHyperParameterTuningJob through the
provider's hook) and the local executor (the job folder's DescribeTrainingJob-shaped training.json).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)

#: Statuses of a job still running (SageMaker's; Neo's are upper case).
RUNNING = frozenset({"inprogress", "starting"})
COMPLETED = frozenset({"completed"})
#: How many later jobs of one run are looked for (a retry count beyond this is not expected).
MAX_TRIES = 100

#: ``(name) -> Describe* answer``, None when there is no job of that name.
Describe = Callable[[str], Mapping[str, Any] | None]


@dataclass(frozen=True)
class Attachment:
    """What a task does about its job: ``start`` a new one named ``name``, ``attach`` to it, or ``take`` it."""

    action: Literal["start", "attach", "take"]
    name: str
    description: Mapping[str, Any] | None = None
    earlier: str | None = None  # the failed job a new one replaces, and its status

    def message(self, noun: str) -> str:
        if self.action == "attach":
            return f"{noun} {self.name} of this run is still running: re-attaching to it"
        if self.action == "take":
            return f"{noun} {self.name} of this run has completed: taking its result, starting nothing"
        if self.earlier:
            return f"{noun} {self.earlier}: starting {self.name}"
        return f"starting {noun} {self.name}"


def later_name(name: str, number: int, attempt: int = 0) -> str:
    """The name of the ``number``-th job of a run whose first is ``name`` (:func:`naming.job_name`'s suffix)."""
    return f"{name}-t{number}" + (f"-{attempt}" if attempt else "")


def _usable(description: Mapping[str, Any], status_key: str) -> str | None:
    status = str(description.get(status_key, "")).lower()
    if status in RUNNING:
        return "attach"
    if status in COMPLETED:
        return "take"
    model = (description.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if status == "stopped" and description.get("SecondaryStatus") == "MaxRuntimeExceeded" and model:
        return "take"  # the limit the request set, reached with the best epoch kept: the job's result
    return None


def find_job(describe: Describe, name: str, status_key: str, try_number: int | None = None) -> Attachment:
    """The run's newest job under ``name`` and what to do about it (see the module docstring).

    A new job after a failed one is named for ``try_number`` (``<name>-t<try>``), else for the
    first free number; an attempt suffix is added while that name is taken.
    """
    found: list[tuple[str, Mapping[str, Any]]] = []
    for number in range(1, MAX_TRIES + 1):
        candidate = name if number == 1 else later_name(name, number)
        description = describe(candidate)
        if description is None:
            if number > 1 and (try_number is None or number > try_number):
                break
            continue
        found.append((candidate, description))
    if not found:
        return Attachment("start", name)
    newest, description = found[-1]
    action = _usable(description, status_key)
    if action is not None:
        return Attachment(action, newest, description)  # type: ignore[arg-type]
    earlier = f"{newest} is {description.get(status_key)}"
    number = try_number if try_number and try_number > 1 else len(found) + 1
    for attempt in range(MAX_TRIES):
        fresh = later_name(name, number, attempt)
        if describe(fresh) is None:
            return Attachment("start", fresh, earlier=earlier)
    raise RuntimeError(f"{name}: {MAX_TRIES} names of this try are taken")
