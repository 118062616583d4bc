"""What makes checkpoints mergeable: one architecture and one set of tensors (one vocabulary is
:func:`hybridformer.inference.check_same_vocabulary`, shared with ensembles).

Each check compares every checkpoint with the first and raises a :class:`CheckpointError`
naming both checkpoints and the first few differences, so the user sees which input is odd.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..errors import CheckpointError
from ..tensorfile import TensorSpecs

# Fields that change training, not the weights' meaning: checkpoints may differ in them and still merge.
_TRAINING_ONLY = {"dropout"}
_SHOWN = 5  # differences listed in one error message


def check_same_architecture(paths: Sequence[str | Path], configs: Sequence[ModelConfig]) -> None:
    """Weight merging needs one architecture: configs equal except for training-only fields (dropout)."""
    reference = _flatten(configs[0].model_dump())
    for path, cfg in zip(paths[1:], configs[1:], strict=True):
        other = _flatten(cfg.model_dump())
        diffs = [f"{key}: {reference.get(key)!r} vs {other.get(key)!r}" for key in sorted(set(reference) | set(other))
                 if key.split(".")[-1] not in _TRAINING_ONLY and reference.get(key) != other.get(key)]
        if diffs:
            raise CheckpointError(f"{paths[0]} and {path} have different architectures ({'; '.join(diffs[:_SHOWN])}); "
                                  "merging needs checkpoints of one config — use an ensemble for different ones")


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat




def check_same_tensors(paths: Sequence[str | Path], specs: Sequence[TensorSpecs]) -> None:
    """Every weights file must hold the same tensor names with the same shapes and dtypes."""
    reference = specs[0]
    for path, other in zip(paths[1:], specs[1:], strict=True):
        problems = [f"missing {name}" for name in reference if name not in other]
        problems += [f"unexpected {name}" for name in other if name not in reference]
        problems += [f"{name} {_show(reference[name])} vs {_show(other[name])}"
                     for name in reference if name in other and reference[name] != other[name]]
        if problems:
            raise CheckpointError(f"{paths[0]} and {path} have mismatching tensors: {'; '.join(problems[:_SHOWN])}"
                                  + (f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""))


def _show(spec: tuple[str, tuple[int, ...]]) -> str:
    dtype, shape = spec
    return f"{dtype}{list(shape)}"
