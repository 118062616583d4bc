"""Engines: what decodes and scores a loaded model. Every command that decodes or scores takes one from
:data:`ENGINES` by name (``--engine torch|ct2``) through :func:`load_engine` — the only place that knows
which engine runs.

An engine is loaded from checkpoint paths (``load``), then answers in token ids, a batch of rows in and
rows out: ``decode_batch`` runs one search over a batch (``ragged``: whether LM prompts of different lengths
may share it, ``budgets``: each prompt's output budget), ``stream`` decodes any number of inputs handing
each output token over as it is chosen, ``nll`` scores text under teacher forcing. Where ``joins`` is True
(the torch engine, for a language model that takes left padding) the engine also exposes its rows directly:
``prefill`` of prompts of any lengths (``prefill_chunks``: a chunk at a time), ``step``, ``keep`` for rows
leaving and ``join`` for rows arriving — what continuous batching needs. CTranslate2 runs whole searches
only (``joins`` is False).
Adding an engine: one module here with such a class, one line in ``ENGINES``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from tokenizers import Tokenizer

from ..config import ModelConfig
from ..data.chat import ChatTemplate
from ..errors import ConfigError
from ..inference import CheckpointLike
from .ct2 import Ct2Engine
from .options import GenerationOptions, output_budget
from .rows import Emit, decode_sources
from .torch import TorchEngine


class Engine(Protocol):
    """A loaded model (or ensemble) that decodes and scores token ids."""

    tokenizer: Tokenizer
    config: ModelConfig
    name: str  # the checkpoint path(s), for messages
    device: torch.device
    chat_template: ChatTemplate | None
    joins: bool  # rows may join a running batch: prefill(rows), step(state, tokens), keep(state, index), join

    @classmethod
    def load(cls, checkpoints: Sequence[CheckpointLike], device: str | torch.device = "cpu", *, purpose: str,
             weights: Sequence[float] | None, combine: str, quantization: str | None,
             adapter: str | Path | None, compile: bool) -> Engine: ...

    def decode_batch(self, sources: list[list[int]], opts: GenerationOptions, generator: torch.Generator | None = None,
                     on_token: Emit | None = None) -> list[list[int]]: ...

    def ragged(self, opts: GenerationOptions, sources: list[list[int]]) -> bool: ...

    def budgets(self, sources: list[list[int]], opts: GenerationOptions) -> list[int]: ...

    def stream(self, sources: list[list[int]], opts: GenerationOptions, generator: torch.Generator | None = None,
               emit: Emit | None = None) -> list[list[int]]: ...

    def nll(self, sources: list[list[int]], targets: list[list[int]] | None = None) -> tuple[float, int]: ...


ENGINES: dict[str, type[Engine]] = {"torch": TorchEngine, "ct2": Ct2Engine}


def load_engine(checkpoints: CheckpointLike | Sequence[CheckpointLike], device: str | torch.device = "cpu", *,
                engine: str = "torch", purpose: str = "generate", weights: Sequence[float] | None = None,
                combine: str = "prob", quantization: str | None = None, adapter: str | Path | None = None,
                compile: bool = False) -> Engine:
    """Load the checkpoint(s) into the engine named ``engine``: several checkpoints are one ensemble (torch),
    ``quantization`` is CTranslate2's compute type (ct2), ``adapter`` a LoRA adapter (PEFT format) folded into
    the one checkpoint (torch; a LoRA run's adapter-only checkpoint loads on the base model it names),
    ``compile`` runs the decoding steps through ``torch.compile`` (torch; docs/decoding.md)."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    items = [checkpoints] if isinstance(checkpoints, CheckpointLike) else list(checkpoints)
    return ENGINES[engine].load(items, device, purpose=purpose, weights=weights, combine=combine,
                                quantization=quantization, adapter=adapter, compile=compile)


__all__ = ["ENGINES", "Engine", "GenerationOptions", "decode_sources", "load_engine", "output_budget"]
