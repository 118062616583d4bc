"""Validated, nested configuration (pydantic), loaded from YAML with ``a.b=c`` overrides.

``model`` holds the architecture and its derived facts, ``stack`` a stack of layers and its mixers'
options, ``recipe`` the training recipe, ``base`` the strict base and loading. Every validation failure
surfaces as one :class:`ConfigError` naming the full key path, the bad value and what is allowed.
"""

from ..errors import ConfigError
from .base import apply_overrides, parse_config, read_config_file
from .model import INPUT_LIMIT, ModelConfig, load_config
from .recipe import BPE_MIN_VOCAB, LORA_TARGETS, DataConfig, ExperimentConfig, LoraConfig, TrainConfig
from .stack import AttentionConfig, ConvConfig, RopeScaling, SSMConfig, StackConfig

__all__ = [
    "AttentionConfig",
    "ConvConfig",
    "SSMConfig",
    "StackConfig",
    "ModelConfig",
    "RopeScaling",
    "DataConfig",
    "LoraConfig",
    "TrainConfig",
    "ExperimentConfig",
    "ConfigError",
    "load_config",
    "parse_config",
    "apply_overrides",
    "read_config_file",
    "BPE_MIN_VOCAB",
    "LORA_TARGETS",
    "INPUT_LIMIT",
]
