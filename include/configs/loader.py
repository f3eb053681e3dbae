"""Load, merge and validate the pipeline configuration.

Order, later wins: ``defaults.yaml`` < the profile (``local.yaml`` / ``sagemaker.yaml``, picked
by the backend) < the file named by ``DETECTION_CONFIG_FILE`` < environment variables
``DETECTION__SECTION__KEY=value`` < explicit overrides (DAG params, CLI flags). Every problem
is reported as ``ConfigError`` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from include.configs.schema import BUCKET, ROLE_ARN, PipelineConfig
from include.project import PROJECT_ROOT

CONFIG_DIR = Path(__file__).resolve().parent
PROFILES = ("local", "sagemaker")
ENV_PREFIX = "DETECTION__"

#: DAG param / CLI name -> dotted config key it overrides.
PARAM_KEYS: dict[str, str] = {
    "backend": "backend",
    "dataset_source": "dataset.source",
    "dataset_format": "dataset.format",
    "classes": "dataset.classes",
    "epochs": "training.hyperparameters.epochs",
    "tune": "training.tune",
    "deploy": "deploy.enabled",
    "promotion_threshold": "evaluation.promotion_threshold",
    "keep_endpoint_minutes": "deploy.keep_endpoint_minutes",
    "delete_intermediate_files": "deploy.delete_intermediate_files",
    "quality_policy": "quality.policy",
    "approval": "promotion.approval",
    "approval_timeout_minutes": "promotion.approval_timeout_minutes",
    "export": "export.enabled",
    "deploy_runtime": "deploy.runtime",
    "use_cache": "cache.enabled",
}


class ConfigError(ValueError):
    """The configuration is invalid; the message names every offending key."""


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into a copy of ``base``, recursing into mappings."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_key(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating sections as needed."""
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"key '{dotted}': '{part}' is not a section")
    node[leaf] = value


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``DETECTION__SAGEMAKER__ROLE_ARN=arn:...`` -> ``{"sagemaker": {"role_arn": "arn:..."}}`` (YAML scalars)."""
    out: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            set_key(out, name[len(ENV_PREFIX) :].lower().replace("__", "."), yaml.safe_load(raw))
    return out


def param_overrides(params: Mapping[str, Any]) -> dict[str, Any]:
    """Turn DAG params / CLI flags into config overrides; ``None`` and ``""`` mean "not set"."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name not in PARAM_KEYS:
            raise ConfigError(f"unknown parameter '{name}' = {value!r}; allowed: {', '.join(PARAM_KEYS)}")
        if value is None or value == "":
            continue
        if name == "classes" and isinstance(value, str):
            value = [c.strip() for c in value.split(",") if c.strip()]
        set_key(out, PARAM_KEYS[name], value)
    return out


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc) or "(config)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            section = _lookup(PipelineConfig, loc[:-1])
            allowed = ", ".join(section) if section else "none"
            lines.append(f"unknown key '{key}' = {err['input']!r}; allowed keys here: {allowed}")
        elif loc:
            lines.append(f"key '{key}' = {err['input']!r}: {msg}")
        else:
            lines.append(msg)
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _lookup(model: type, path: list[str]) -> list[str]:
    """Field names of the section at ``path`` (empty when the path is not a fixed section)."""
    for part in path:
        field = getattr(model, "model_fields", {}).get(part)
        annotation = getattr(field, "annotation", None)
        if not isinstance(annotation, type) or not hasattr(annotation, "model_fields"):
            return []
        model = annotation
    return list(getattr(model, "model_fields", {}))


def _check_backend(cfg: PipelineConfig) -> None:
    """Cross-field rules: what the SageMaker backend needs, and resolved storage."""
    problems = []
    sm = cfg.sagemaker
    if cfg.backend == "sagemaker":
        if not sm.role_arn:
            problems.append(
                "key 'sagemaker.role_arn' = None: the sagemaker backend needs an IAM execution role ARN "
                "(arn:aws:iam::<12-digit account>:role/<name>)"
            )
        base = cfg.storage.base_uri
        if base is None and not sm.bucket:
            problems.append(
                "key 'sagemaker.bucket' = None: the sagemaker backend needs an S3 bucket "
                "(or storage.base_uri = s3://bucket/prefix)"
            )
        if base is not None and not base.startswith("s3://"):
            problems.append(
                f"key 'storage.base_uri' = {base!r}: the sagemaker backend reads and writes S3, "
                "so only s3:// URIs are allowed (file:// and local paths are not)"
            )
    if sm.role_arn and not ROLE_ARN.match(sm.role_arn):
        problems.append(
            f"key 'sagemaker.role_arn' = {sm.role_arn!r}: not an IAM role ARN (arn:aws:iam::<12 digits>:role/<name>)"
        )
    if sm.bucket and not BUCKET.match(sm.bucket):
        problems.append(f"key 'sagemaker.bucket' = {sm.bucket!r}: not a valid S3 bucket name")
    problems += _export_problems(cfg)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _export_problems(cfg: PipelineConfig) -> list[str]:
    """What the export formats and the serving runtime need of the backend and of each other."""
    problems = []
    formats = cfg.export.formats
    if cfg.backend == "local" and "neo" in formats:
        problems.append(
            f"key 'export.formats' = {formats!r}: Neo compiles on SageMaker only; the local backend exports onnx"
        )
    if cfg.deploy.runtime == "onnxruntime":
        if cfg.backend != "local":
            problems.append(
                "key 'deploy.runtime' = 'onnxruntime': only local endpoints serve the ONNX export; SageMaker "
                "endpoints run the built-in algorithm's container (compile with Neo for other targets)"
            )
        elif not cfg.export.enabled or "onnx" not in formats:
            problems.append(
                "key 'deploy.runtime' = 'onnxruntime' serves the ONNX export: also set export.enabled: true "
                "(the 'export' param) with 'onnx' in export.formats"
            )
    return problems


def _check_hyperparameters(cfg: PipelineConfig) -> None:
    """Validate training hyperparameters with the training stage's own validator.

    ``num_classes`` and ``num_training_samples`` come from the data at training time, so they
    are only checked here when the configuration sets them.
    """
    from include.training.hyperparameters import HyperparameterError, validate_hyperparameters

    from_data = {"num_classes": "1", "num_training_samples": "1"}
    hp = from_data | {k: str(v) for k, v in cfg.training.hyperparameters.items()}
    scratch = hp | {k: str(v) for k, v in cfg.training.scratch_hyperparameters.items()}
    for key, values in (("hyperparameters", hp), ("scratch_hyperparameters", scratch)):
        try:
            validate_hyperparameters(values, for_sagemaker=cfg.backend == "sagemaker")
        except HyperparameterError as exc:
            raise ConfigError(f"invalid configuration:\n  training.{key}: {exc}") from exc


def resolve_storage(cfg: PipelineConfig) -> str:
    """The storage base URI the run writes under (absolute)."""
    from include import storage

    base = cfg.storage.base_uri
    if base is None:
        if cfg.backend == "sagemaker":
            return f"s3://{cfg.sagemaker.bucket}/{cfg.sagemaker.prefix.strip('/')}"
        base = "data/runs"
    if "://" not in base and not Path(base).is_absolute():
        base = str(PROJECT_ROOT / base)
    return storage.normalize(base)


def _section(data: Any, *keys: str) -> Any:
    """``data[k1][k2]...`` when every level is a mapping, else an empty dict."""
    for key in keys:
        data = data.get(key) if isinstance(data, Mapping) else None
    return data if isinstance(data, Mapping) else {}


def _keep_own_hyperparameters(merged: dict[str, Any], top: Mapping[str, Any]) -> None:
    """A hyperparameter set above the profile (file, environment, params) also holds without ImageNet weights.

    ``training.scratch_hyperparameters`` replaces the profile's own values when training falls back to
    scratch; it must not replace the user's, so those are copied into it (unless it is set there too).
    """
    own = _section(top, "training", "hyperparameters")
    explicit = _section(top, "training", "scratch_hyperparameters")
    scratch = _section(merged, "training", "scratch_hyperparameters")
    if isinstance(scratch, dict):
        scratch.update({k: v for k, v in own.items() if k in scratch and k not in explicit})


def resolve_source(source: str) -> str:
    """``dataset.source`` with a relative local path made absolute against the project root.

    The DAG's workers and the Docker image run from other folders than a person's shell, so a
    relative path in a DAG param or a configuration file means the project's (the CLI turns the
    paths a person types absolute against the current folder before they get here).
    """
    if source == "sample" or "://" in source or Path(source).is_absolute():
        return source
    return str((PROJECT_ROOT / source).resolve())


def load_config(
    overrides: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> PipelineConfig:
    """Build and validate the configuration; raises :class:`ConfigError`.

    ``overrides`` is a nested dict of config keys; ``params`` uses the DAG param names of
    :data:`PARAM_KEYS`. The profile is the backend's (after every override is applied).
    """
    environ = os.environ if environ is None else environ
    extra_file = config_file or environ.get("DETECTION_CONFIG_FILE")
    layers = [
        _read_yaml(Path(extra_file)) if extra_file else {},
        env_overrides(environ),
        dict(overrides or {}),
        param_overrides(params or {}),
    ]
    top: dict[str, Any] = {}
    for layer in layers:
        top = deep_merge(top, layer)
    backend = top.get("backend", _read_yaml(CONFIG_DIR / "defaults.yaml").get("backend", "local"))
    if backend not in PROFILES:
        raise ConfigError(f"invalid configuration:\n  key 'backend' = {backend!r}: allowed: {', '.join(PROFILES)}")
    merged = deep_merge(_read_yaml(CONFIG_DIR / "defaults.yaml"), _read_yaml(CONFIG_DIR / f"{backend}.yaml"))
    merged = deep_merge(merged, top)
    _keep_own_hyperparameters(merged, top)
    try:
        cfg = PipelineConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None
    _check_backend(cfg)
    _check_hyperparameters(cfg)
    cfg.storage.base_uri = resolve_storage(cfg)
    cfg.dataset.source = resolve_source(cfg.dataset.source)
    return cfg
