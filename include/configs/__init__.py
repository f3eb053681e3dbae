"""Pipeline configuration: YAML defaults and profiles, validated by a pydantic schema."""

from include.configs.loader import PARAM_KEYS, ConfigError, load_config
from include.configs.schema import PipelineConfig

__all__ = ["PARAM_KEYS", "ConfigError", "PipelineConfig", "load_config"]
