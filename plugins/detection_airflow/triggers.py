"""A SageMaker job trigger that stops the cloud job when a user kills the deferred task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger

from include.sagemaker.client import stop_job

if TYPE_CHECKING:
    from datetime import timedelta

    from airflow.triggers.base import BaseTrigger

#: Trigger job types whose cloud job can be stopped, and the kind :func:`stop_job` takes.
STOPPABLE = {"training": "training", "tuning": "tuning", "processing": "processing", "transform": "transform"}


class StoppableSageMakerTrigger(SageMakerTrigger):
    """:class:`SageMakerTrigger` plus ``on_kill``: mark-failed or clear on a deferred task stops its job.

    The provider's trigger only waits; a deferred task has no worker process whose ``on_kill``
    could run, so without this a killed task would leave its training or tuning job billing.
    """

    async def on_kill(self) -> None:
        from asgiref.sync import sync_to_async

        kind = STOPPABLE.get(self.job_type.lower())
        if kind is not None:
            # the hook reads its connection and builds a client: blocking work, kept off the event loop
            await sync_to_async(lambda: stop_job(self.hook().conn, kind, self.job_name))()


def waiter_attempts(max_seconds: int, check_interval: int) -> int:
    """Polls needed to wait ``max_seconds`` at one poll every ``check_interval`` seconds (plus one)."""
    if check_interval < 1:
        raise ValueError(f"check_interval must be at least 1 second (got {check_interval})")
    return -(-max_seconds // check_interval) + 1


class SizedDeferralMixin:
    """Replaces the provider's ``SageMakerTrigger`` at ``defer`` time with a :class:`StoppableSageMakerTrigger`
    that polls every ``check_interval`` seconds for the whole ``max_ingestion_time``.

    The provider sizes its trigger's poll count from ``max_attempts`` (training: 60 polls, 30
    minutes at the default interval) or not at all (tuning, endpoints: the trigger's default of
    480 polls), whatever ``max_ingestion_time`` says. Mix in before the provider's operator class.
    """

    check_interval: int
    max_ingestion_time: int | None

    def defer(
        self,
        *,
        trigger: BaseTrigger,
        method_name: str,
        kwargs: dict[str, Any] | None = None,
        timeout: timedelta | int | float | None = None,
    ) -> Any:
        if isinstance(trigger, SageMakerTrigger):
            trigger = StoppableSageMakerTrigger(
                job_name=trigger.job_name,
                job_type=trigger.job_type,
                waiter_delay=self.check_interval,
                waiter_max_attempts=(
                    waiter_attempts(self.max_ingestion_time, self.check_interval)
                    if self.max_ingestion_time
                    else trigger.attempts
                ),
                aws_conn_id=trigger.aws_conn_id,
                region_name=trigger.region_name,
                verify=trigger.verify,
                botocore_config=trigger.botocore_config,
            )
        return super().defer(trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=timeout)  # type: ignore[misc]
