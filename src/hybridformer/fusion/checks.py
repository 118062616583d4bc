"""What makes checkpoints fusable: one vocabulary (ensembles, merges) and one architecture (merges).

Each check compares every checkpoint with the first and raises a :class:`CheckpointError`
naming both checkpoints and the first few differences, so the user sees which input is odd.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from ..config import ModelConfig
from ..errors import CheckpointError

# Fields that change training, not the weights' meaning: checkpoints may differ in them and still merge.
_TRAINING_ONLY = {"dropout"}
_SHOWN = 5  # differences listed in one error message


def check_same_vocabulary(
    paths: Sequence[str | Path], configs: Sequence[ModelConfig], tokenizers: Sequence[Tokenizer | None],
) -> None:
    """Token ids must mean the same in every checkpoint: same vocab size, special ids and tokenizer vocabulary.

    The tokenizers are compared by content (the token -> id table), not by file name or bytes.
    """
    first, first_cfg, first_tok = paths[0], configs[0], tokenizers[0]
    for path, cfg, tok in zip(paths[1:], configs[1:], tokenizers[1:], strict=True):
        where = f"{first} and {path} have different vocabularies"
        for key in ("vocab_size", "pad_id", "bos_id", "eos_id"):
            if getattr(cfg, key) != getattr(first_cfg, key):
                raise CheckpointError(f"{where}: {key} {getattr(first_cfg, key)} vs {getattr(cfg, key)}; "
                                      "fused checkpoints must share one tokenizer")
        if (tok is None) != (first_tok is None):
            missing = first if first_tok is None else path
            raise CheckpointError(f"{where}: {missing} has no tokenizer.json, so the vocabularies cannot be "
                                  "compared; copy the shared tokenizer.json into it")
        if tok is not None and first_tok is not None:
            difference = _vocab_difference(first_tok, tok)
            if difference:
                raise CheckpointError(f"{where} ({difference}); fused checkpoints must share one tokenizer")


def _vocab_difference(a: Tokenizer, b: Tokenizer) -> str | None:
    va, vb = a.get_vocab(with_added_tokens=True), b.get_vocab(with_added_tokens=True)
    if va == vb:
        return None
    ia, ib = {i: t for t, i in va.items()}, {i: t for t, i in vb.items()}
    first_id = min(i for i in set(ia) | set(ib) if ia.get(i) != ib.get(i))
    return (f"tokenizer.json: {len(va)} vs {len(vb)} tokens, first difference at id {first_id}: "
            f"{ia.get(first_id)!r} vs {ib.get(first_id)!r}")


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


TensorSpecs = dict[str, tuple[str, tuple[int, ...]]]  # name -> (dtype, shape)


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
