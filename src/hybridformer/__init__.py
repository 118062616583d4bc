"""hybridformer: improved Transformers — long-text attention, convolution hybrids, model fusion.

The public names load on first use (PEP 562), so ``import hybridformer`` — and the CLI's ``--help`` and
``--version`` — stay fast and do not import torch.
"""

import sys
from importlib import import_module
from types import ModuleType

__version__ = "0.1.0"

# Public name -> the submodule that defines it.
_SOURCES = {
    "ModelConfig": "config", "load_config": "config",
    "build_model": "models", "EncoderDecoder": "models", "DecoderLM": "models", "Encoder": "models",
    "Checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "train": "train", "generate": "generation", "evaluate": "evaluate",
    "Ensemble": "fusion", "average_checkpoints": "fusion", "merge_checkpoints": "fusion",
    "ConfigError": "errors", "CheckpointError": "errors", "DataError": "errors", "HybridformerError": "errors",
    "evaluate_classifier": "classify", "convert": "interop", "embed": "embed",
    "hybridize": "hybridize",
}

__all__ = list(_SOURCES)


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_SOURCES[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


class _Package(ModuleType):
    """Keeps ``hybridformer.train`` (and ``evaluate``, ``embed``) the function when its submodule loads.

    The import system binds every loaded submodule on its package; eagerly the function import came last and won.
    """

    def __setattr__(self, name: str, value) -> None:
        if not (name in _SOURCES and isinstance(value, ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
