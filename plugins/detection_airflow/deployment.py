"""Deployment operator: CreateModel, CreateEndpointConfig and CreateEndpoint through the provider, retry-safe."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerEndpointOperator, serialize

from detection_airflow.base import DetectionOperatorMixin
from detection_airflow.triggers import waiter_attempts
from include.endpoints.sagemaker import describe_deployment, plan_deployment
from include.execution import DEPLOYMENT
from include.sagemaker.results import deployment_result

if TYPE_CHECKING:
    from airflow.sdk import Context


class DetectionEndpointOperator(DetectionOperatorMixin, SageMakerEndpointOperator):
    """Deploy a model to an endpoint and wait until it is InService; return a small result.

    The request is ``{"Model", "EndpointConfig", "Endpoint"}`` (:func:`include.sagemaker.requests.deployment_request`),
    built at execute time by ``request_builder(context, run)`` or given as ``config``, and validated
    offline. Running again with the same names adopts what exists instead of failing
    (:func:`include.endpoints.sagemaker.plan_deployment`): an existing model or endpoint config is
    not created again, and an endpoint already on this config is only waited for (one on another
    config is updated, as the provider does). On the local backend the request starts a local
    endpoint (:func:`include.endpoints.local.run_local_deployment`).

    Parameters as :class:`~detection_airflow.base.DetectionOperatorMixin` (``max_ingestion_time``:
    seconds to wait for InService, 3600 by default).

    :return: ``{"backend", "endpoint_name", "endpoint_config_name", "model_names", "status"}``, and
        ``endpoint_url`` and ``pid`` of a local endpoint.
    """

    template_fields = (*SageMakerEndpointOperator.template_fields, "backend")
    execution_operation = DEPLOYMENT
    default_check_interval: ClassVar[int] = 30
    default_max_ingestion_time: ClassVar[int | None] = 3600

    def __init__(self, **kwargs: Any) -> None:  # wrapped by Airflow's metaclass (see detection_airflow.base)
        super().__init__(**kwargs)

    @classmethod
    def provider_arguments(cls, deferrable: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {"operation": "create", **kwargs}

    def send_to_sagemaker(self, context: Context, request: dict[str, Any]) -> Mapping[str, Any]:
        plan = plan_deployment(self.hook.conn, request)
        self.config = plan.request
        if not plan.endpoint_ready:
            return self.provider_execute(context)  # creates what is missing; an existing endpoint is updated
        endpoint_name = request["Endpoint"]["EndpointName"]
        self.log.info("endpoint %s exists on this config already; waiting for it", endpoint_name)
        self.hook.get_waiter("endpoint_in_service").wait(
            EndpointName=endpoint_name,
            WaiterConfig={
                "Delay": self.check_interval,
                "MaxAttempts": waiter_attempts(self.max_ingestion_time, self.check_interval),
            },
        )
        return {key: serialize(value) for key, value in describe_deployment(self.hook.conn, endpoint_name).items()}

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        result = deployment_result(super().execute_complete(context, event), backend="sagemaker")
        return self.handle_result(context, result)
