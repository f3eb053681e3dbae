"""The standing production endpoint, on either backend: release a model to it, roll it back, its history.

Beside the per-run endpoint that a run's smoke test uses and its teardown removes, a team serves its
detector from one named endpoint (``deploy.production.endpoint_name``) that applications call all
the time. :func:`release` puts a model on it: the registry's ``champion`` (approved) version by
default, another approved version, or a model archive given by hand. The endpoint is created when
absent and otherwise updated in place:

* **local**: the new model is started beside the old one, smoke-tested at its own address, and only
  then takes over the endpoint's stable address (:mod:`include.endpoints.production_local`);
* **sagemaker**: a new model and endpoint config, then ``UpdateEndpoint`` with a blue/green
  deployment and automatic rollback on the endpoint's CloudWatch alarms
  (:mod:`include.endpoints.production_sagemaker`).

:func:`rollback` puts back the model that served before the current one, the same way. Every
change is appended to the endpoint's history (``<storage>/endpoints/<name>/history.json``, one home
for both backends): when, what (model, registry version), which action, who and why, so "what
served when" has an answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from include import storage

if TYPE_CHECKING:
    from include.configs import PipelineConfig
    from include.tracking.registry import Registry

log = logging.getLogger(__name__)

CREATE, ROLLOUT, ROLLBACK = "create", "rollout", "rollback"
HISTORY_FILE = "history.json"
#: Images a release's smoke test sends when no folder is given (taken from the model's own run).
SMOKE_IMAGES = 4


class ReleaseError(ValueError):
    """What the release asks for cannot be released (no champion, a version never approved, no history)."""


@dataclass(frozen=True)
class Release:
    """A model to put on the production endpoint."""

    model_uri: str
    #: The registry's version (None: a model archive released by hand).
    version: int | None = None
    runtime: str = "mxnet"
    #: The approved SageMaker model package the version was made into (sagemaker backend).
    model_package_arn: str | None = None

    @property
    def model_id(self) -> str:
        """How answers and the history name the model: ``v<version>``, or the archive's URI."""
        return f"v{self.version}" if self.version is not None else self.model_uri


def history_uri(cfg: PipelineConfig, name: str) -> str:
    return storage.join(cfg.storage.base_uri or "", "endpoints", name, HISTORY_FILE)


def history(cfg: PipelineConfig, name: str) -> list[dict[str, Any]]:
    """Every release and rollback of endpoint ``name``, oldest first ([] before the first)."""
    uri = history_uri(cfg, name)
    if not storage.exists(uri):
        return []
    try:
        return list(json.loads(storage.read_text(uri))["entries"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{uri}: not an endpoint history ({exc})") from None


def _append(cfg: PipelineConfig, name: str, entry: dict[str, Any]) -> list[dict[str, Any]]:
    entries = [*history(cfg, name), entry]
    storage.write_text(history_uri(cfg, name), json.dumps({"endpoint": name, "entries": entries}, indent=2))
    return entries


def endpoint_name(cfg: PipelineConfig, name: str | None) -> str:
    """The production endpoint's name: ``name``, else ``deploy.production.endpoint_name``."""
    name = name or cfg.deploy.production.endpoint_name
    from include.endpoints.local import check_name

    check_name(name)
    return name


# --- what to release ----------------------------------------------------------------------


def release_from_registry(registry: Registry, version: int | None, runtime: str = "mxnet") -> Release:
    """The champion (``version`` None) or an approved version of the registered model, as a :class:`Release`.

    A version that was never approved (nor champion) is refused: the production endpoint serves
    only what a person or the gate's automatic approval let through.
    """
    from include.tracking.promotion import APPROVED, PACKAGE_TAG
    from include.tracking.registry import APPROVAL_TAG, CHAMPION

    if version is None:
        lookup = registry.lookup(CHAMPION)
        if lookup.version is None:
            raise ReleaseError(
                lookup.note or f"registered model {registry.name!r} has no champion yet: promote a version first"
            )
        chosen = lookup.version
    else:
        chosen = registry.version(version)
        served = {move["champion"] for move in registry.history()}
        if chosen.tags.get(APPROVAL_TAG) != APPROVED and version not in served:
            raise ReleaseError(
                f"version {version} of {registry.name!r} was never approved "
                f"(approval: {chosen.tags.get(APPROVAL_TAG) or 'none'}); approve it with detection-pipeline promote"
            )
    return Release(
        model_uri=chosen.model_data_url,
        version=chosen.version,
        runtime=runtime,
        model_package_arn=chosen.tags.get(PACKAGE_TAG) or None,
    )


def smoke_image_uris(model_uri: str, folder: str | None, count: int = SMOKE_IMAGES) -> list[str]:
    """The images a release's smoke test sends: JPEG/PNG files of ``folder``, else the validation images of the
    run that trained the model (its training record names its RecordIO build, beside the run's quality table)."""
    if folder:
        files = sorted(u for u in storage.listdir(folder) if u.lower().endswith((".jpg", ".jpeg", ".png")))
        if not files:
            raise ReleaseError(f"{folder} holds no .jpg/.jpeg/.png images for the smoke test")
        return files[:count]
    from include.endpoints.invocation import validation_images
    from include.evaluation.training_run import resolve_training

    try:
        data_uri = resolve_training(model_uri).record["data_uri"]
        return validation_images(storage.join(data_uri.rstrip("/").rsplit("/", 1)[0], "quality"), count)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise ReleaseError(
            f"no smoke-test images found for {model_uri} ({exc}); give a folder of images (--smoke-images)"
        ) from None


# --- release and rollback -----------------------------------------------------------------


def release(
    cfg: PipelineConfig,
    model: Release,
    *,
    name: str | None = None,
    action: str = ROLLOUT,
    by: str,
    reason: str,
    smoke_images: str | None = None,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Put ``model`` on the production endpoint (created when absent); the outcome, also appended to its history.

    Locally the new model must pass a smoke test (``smoke_images``, see :func:`smoke_image_uris`)
    before it takes traffic; on SageMaker the blue/green deployment's alarms guard it. Either way
    a failed release leaves the old model serving and raises.
    """
    name = endpoint_name(cfg, name)
    model = replace(model, model_uri=storage.normalize(model.model_uri))
    if cfg.backend == "sagemaker":
        from include.endpoints.production_sagemaker import roll_out

        outcome = roll_out(cfg, name, model)
    else:
        outcome = _roll_out_locally(cfg, name, model, smoke_images, port, env)
    entry = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "action": CREATE if outcome.get("created") else action,
        "backend": cfg.backend,
        **asdict(model),
        "model_id": model.model_id,
        "by": by,
        "reason": reason[:500],
        **{k: outcome[k] for k in ("generation", "endpoint_config", "model_name") if k in outcome},
    }
    _append(cfg, name, entry)
    return {"endpoint_name": name, "backend": cfg.backend, **outcome, "release": entry}


def _roll_out_locally(
    cfg: PipelineConfig, name: str, model: Release, smoke_images: str | None, port: int | None,
    env: Mapping[str, str] | None,
) -> dict[str, Any]:  # fmt: skip
    from include.endpoints.invocation import http_invoker
    from include.endpoints.local import state_dir
    from include.endpoints.production_local import switch_to
    from include.serving.draw import read_classes
    from include.serving.smoke import smoke_test

    max_body = int(cfg.deploy.max_body_mb * 1024 * 1024)
    images = smoke_image_uris(model.model_uri, smoke_images, cfg.deploy.smoke_images)
    num_classes = len(read_classes(model.model_uri)) if model.runtime == "mxnet" else None

    def smoke(url: str) -> dict[str, Any]:
        return smoke_test(http_invoker(url), images, num_classes=num_classes, max_body_bytes=max_body)

    p = cfg.deploy.production
    return switch_to(
        state_dir(cfg), name, model.model_uri, model.model_id, smoke,
        host=cfg.local.host, port=p.port if port is None else port, runtime=model.runtime,
        max_body_bytes=max_body, capture=capture_settings(cfg), env=env,
    )  # fmt: skip


def capture_settings(cfg: PipelineConfig) -> dict[str, Any] | None:
    """What the local production endpoint captures (``deploy.capture``), None when off."""
    c = cfg.deploy.capture
    if not c.enabled or c.percent <= 0:
        return None
    return {"destination": capture_destination(cfg), "percent": c.percent, "json_content_types": c.json_content_types}


def capture_destination(cfg: PipelineConfig) -> str:
    """Where captured invocations go: ``deploy.capture.destination``, else ``<storage>/data-capture``."""
    return cfg.deploy.capture.destination or storage.join(cfg.storage.base_uri or "", "data-capture")


def rollback(
    cfg: PipelineConfig,
    *,
    name: str | None = None,
    by: str,
    reason: str,
    smoke_images: str | None = None,
    registry: Registry | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Put back the model that served before the current one, with the same zero-downtime mechanism.

    With ``registry``, a restored registry version becomes ``champion`` again (when the version being
    replaced is the champion), so the promotion gate compares with what production serves.
    """
    name = endpoint_name(cfg, name)
    entries = history(cfg, name)
    if len(entries) < 2:
        raise ReleaseError(f"endpoint {name} has {len(entries)} release(s) in its history: nothing to roll back to")
    current, target = entries[-1], entries[-2]
    model = Release(target["model_uri"], target.get("version"), target.get("runtime", "mxnet"),
                    target.get("model_package_arn"))  # fmt: skip
    outcome = release(cfg, model, name=name, action=ROLLBACK, by=by, reason=reason, smoke_images=smoke_images, env=env)
    if registry is not None and model.version is not None:
        from include.tracking.registry import CHAMPION

        champion = registry.lookup(CHAMPION).version
        if champion is not None and champion.version == current.get("version") != model.version:
            why = f"endpoint {name} rolled back: {reason}"
            outcome["registry"] = registry.rollback(model.version, by=by, reason=why)
    return outcome


def describe(cfg: PipelineConfig, name: str | None = None) -> dict[str, Any]:
    """The production endpoint now (local: the router and its model server; sagemaker: DescribeEndpoint) and its
    history."""
    name = endpoint_name(cfg, name)
    if cfg.backend == "sagemaker":
        from include.endpoints.production_sagemaker import describe_production

        now = describe_production(cfg, name)
    else:
        from include.endpoints.local import state_dir
        from include.endpoints.production_local import status

        now = status(state_dir(cfg), name)
    return {"endpoint_name": name, "backend": cfg.backend, "endpoint": now, "history": history(cfg, name)}
