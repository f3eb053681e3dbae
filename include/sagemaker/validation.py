"""Offline validation of SageMaker requests against botocore's own SageMaker service model.

botocore's ``ParamValidator`` checks required members, types and minimum lengths. The service
also enforces maximum lengths and values, enums and patterns (a 64-character job name, a
misspelt instance type, a ``file://`` URI where an S3 URI belongs), which botocore leaves to the
server; :func:`validate_request` checks those too, from the same model, so a request that
passes here fails at SageMaker only for reasons that need AWS (permissions, quotas, data).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

SERVICE = "sagemaker"


class RequestValidationError(ValueError):
    """A request does not fit the SageMaker API; the message lists every problem."""


@functools.cache
def _service_model(service: str = SERVICE) -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


@functools.cache
def _pattern(text: str) -> re.Pattern[str] | None:
    """The compiled shape pattern, or ``None`` for Java-only syntax (``\\p{L}``) Python cannot compile."""
    try:
        return re.compile(text)
    except re.error:
        return None


def _constraint_errors(shape: Any, value: Any, path: str, errors: list[str]) -> None:
    """Collect max length/value, enum and pattern violations under ``shape`` (types are botocore's job)."""
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure" and isinstance(value, Mapping):
        for key, item in value.items():
            if key in shape.members:
                _constraint_errors(shape.members[key], item, f"{path}.{key}" if path else key, errors)
    elif kind == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {len(value)} items, at most {meta['max']} allowed")
        for i, item in enumerate(value):
            _constraint_errors(shape.member, item, f"{path}[{i}]", errors)
    elif kind == "map" and isinstance(value, Mapping):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {len(value)} entries, at most {meta['max']} allowed")
        for key, item in value.items():
            _constraint_errors(shape.key, key, f"{path} key {key!r}", errors)
            _constraint_errors(shape.value, item, f"{path}[{key!r}]", errors)
    elif kind == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {value!r} is {len(value)} characters, at most {meta['max']} allowed")
        if shape.enum and value not in shape.enum:
            shown = ", ".join(shape.enum[:12]) + (", ..." if len(shape.enum) > 12 else "")
            errors.append(f"{path}: {value!r} is not one of {shown}")
        pattern = _pattern(meta["pattern"]) if "pattern" in meta else None
        if pattern is not None and not pattern.fullmatch(value):
            errors.append(f"{path}: {value!r} does not match the pattern {meta['pattern']}")
    elif kind in ("integer", "long", "float", "double") and isinstance(value, int | float):
        if "max" in meta and value > meta["max"]:
            errors.append(f"{path}: {value} is above the maximum {meta['max']}")


def _as_s3(value: Any) -> Any:
    """Every ``file://`` URI in ``value`` replaced by an S3 URI of the same path (for local-backend requests)."""
    if isinstance(value, str) and value.startswith("file://"):
        return "s3://local-file" + value[len("file://") :]
    if isinstance(value, Mapping):
        return {key: _as_s3(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_s3(item) for item in value]
    return value


def validate_request(
    operation_name: str, request: Mapping[str, Any], *, local_uris: bool = False, service: str = SERVICE
) -> None:
    """Check ``request`` against the input shape of SageMaker's ``operation_name`` (e.g. ``CreateTrainingJob``);
    ``service`` another AWS service's (``cloudwatch`` for the endpoint's alarms).

    Raises :class:`RequestValidationError` (a ``ValueError``) with botocore's report plus the
    service-side constraints it does not check. ``local_uris=True`` accepts ``file://`` URIs where
    S3 URIs belong (the local backend runs the same request on local files).
    """
    from botocore.model import OperationNotFoundError
    from botocore.validate import ParamValidator

    model = _service_model(service)
    try:
        operation = model.operation_model(operation_name)
    except OperationNotFoundError:
        raise RequestValidationError(f"{service} has no operation {operation_name!r}") from None
    params = _as_s3(request) if local_uris else dict(request)
    report = ParamValidator().validate(params, operation.input_shape)
    errors = [report.generate_report()] if report.has_errors() else []
    _constraint_errors(operation.input_shape, params, "", errors)
    if errors:
        raise RequestValidationError(f"invalid {operation_name} request:\n" + "\n".join(errors))
