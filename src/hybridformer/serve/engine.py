"""What the server decodes with: one loaded model, torch or ct2 engine, token ids in, token ids out."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..generation import GenerationOptions
from ..inference import load_decoder


def load_engine(checkpoint: str | Path, *, engine: str = "torch", quantization: str | None = None,
                device: str = "cpu"):
    """The decoder of one checkpoint (or CTranslate2 export) for ``engine``: ``torch`` or ``ct2``."""
    return load_decoder(checkpoint, device, engine=engine, quantization=quantization)


def options_key(opts: GenerationOptions) -> tuple:
    """Requests whose options share this key may be decoded in one batch (batch_tokens aside)."""
    return tuple(sorted((k, v) for k, v in asdict(opts).items() if k != "batch_tokens"))  # batch_tokens: the server's
