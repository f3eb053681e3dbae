"""Deployment operator: CreateModel, CreateEndpointConfig and CreateEndpoint through the provider, retry-safe."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerEndpointOperator, serialize
from airflow.providers.common.compat.sdk import conf

from detection_airflow.runtime import RequestBuilder, build_request, check_backend, load_callable, run_identity
from detection_airflow.triggers import SizedDeferralMixin, waiter_attempts
from include.sagemaker.results import deployment_result
from include.sagemaker.teardown import is_missing_error
from include.sagemaker.validation import validate_request

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Parts of the combined deployment request and the operation each one is.
PARTS = {"Model": "CreateModel", "EndpointConfig": "CreateEndpointConfig", "Endpoint": "CreateEndpoint"}


class DetectionEndpointOperator(SizedDeferralMixin, SageMakerEndpointOperator):
    """Deploy a model to an endpoint and wait until it is InService; return a small result.

    The request is ``{"Model", "EndpointConfig", "Endpoint"}`` (:func:`include.sagemaker.requests.deployment_request`),
    built at execute time by ``request_builder(context, run)`` or given as ``config``, and validated
    offline. Running again with the same names adopts what exists instead of failing: an existing
    model or endpoint config is not created again, and an endpoint already on this config is only
    waited for (one on another config is updated, as the provider does).

    :param backend: ``"sagemaker"`` or ``"local"`` (templated). For ``local``, ``local_runner``
        (``"module:function"``) takes the request and returns ``{"Endpoint": DescribeEndpoint-shaped,
        "EndpointConfig": DescribeEndpointConfig-shaped}``.
    :param check_interval: seconds between status polls.
    :param max_ingestion_time: seconds to wait for InService.
    :return: ``{"backend", "endpoint_name", "endpoint_config_name", "model_names", "status"}``, and
        ``endpoint_url`` and ``pid`` of a local endpoint.
    """

    template_fields = (*SageMakerEndpointOperator.template_fields, "backend")

    def __init__(
        self,
        *,
        request_builder: RequestBuilder | None = None,
        config: dict[str, Any] | None = None,
        backend: str = "sagemaker",
        local_runner: str | None = None,
        check_interval: int = 30,
        max_ingestion_time: int = 3600,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            config=config or {},
            wait_for_completion=True,
            check_interval=check_interval,
            max_ingestion_time=max_ingestion_time,
            operation="create",
            deferrable=deferrable,
            **kwargs,
        )
        self.request_builder = request_builder
        self.backend = backend
        self.local_runner = local_runner

    def _exists(self, describe: Any, name: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return describe(name)
        except ClientError as err:
            if is_missing_error(err):
                return None
            raise

    def execute(self, context: Context) -> dict[str, Any]:
        backend = check_backend(self.backend, self.task_id)
        request = build_request(
            context, run_identity(context), task_id=self.task_id, builder=self.request_builder, config=self.config
        )
        if "Endpoint" not in request:
            raise ValueError(f"task {self.task_id}: the deployment request needs an 'Endpoint' part")
        for part, operation in PARTS.items():
            if part in request:
                validate_request(operation, request[part], local_uris=backend == "local")
        if backend == "local":
            if not self.local_runner:
                raise ValueError(f"task {self.task_id}: backend 'local' needs local_runner='module:function'")
            return deployment_result(load_callable(self.local_runner)(request), backend="local")

        if "Model" in request and self._exists(self.hook.describe_model, request["Model"]["ModelName"]):
            self.log.info("model %s exists already; not created again", request.pop("Model")["ModelName"])
        config_part = request.get("EndpointConfig")
        if config_part and self._exists(self.hook.describe_endpoint_config, config_part["EndpointConfigName"]):
            self.log.info("endpoint config %s exists already; not created again", config_part["EndpointConfigName"])
            del request["EndpointConfig"]
        endpoint = request["Endpoint"]
        existing = self._exists(self.hook.describe_endpoint, endpoint["EndpointName"])
        self.config = request
        if existing and existing["EndpointConfigName"] == endpoint["EndpointConfigName"]:
            self.log.info("endpoint %s exists on this config already; waiting for it", endpoint["EndpointName"])
            self.hook.get_waiter("endpoint_in_service").wait(
                EndpointName=endpoint["EndpointName"],
                WaiterConfig={
                    "Delay": self.check_interval,
                    "MaxAttempts": waiter_attempts(self.max_ingestion_time, self.check_interval),
                },
            )
            result = {
                "EndpointConfig": serialize(self.hook.describe_endpoint_config(endpoint["EndpointConfigName"])),
                "Endpoint": serialize(self.hook.describe_endpoint(endpoint["EndpointName"])),
            }
        else:
            result = super().execute(context)
        return deployment_result(result, backend="sagemaker")

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        return deployment_result(super().execute_complete(context, event), backend="sagemaker")
