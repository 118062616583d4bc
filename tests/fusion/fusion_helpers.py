"""Tiny checkpoints for the fusion tests: a few-hundred-parameter model and a word-level tokenizer."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel

from hybridformer import ModelConfig, build_model, save_checkpoint

VOCAB = 16


def tokenizer(words: list[str] | None = None) -> Tokenizer:
    words = words or ["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(VOCAB - 4)]
    return Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))


def tiny_config(**overrides) -> ModelConfig:
    base = dict(arch="encoder_decoder", vocab_size=VOCAB, d_model=8, heads=2, ffn_dim=16, dropout=0.0,
                encoder={"layers": 1}, decoder={"layers": 1})
    return ModelConfig(**{**base, **overrides})


def make_checkpoint(path: Path, cfg: ModelConfig | None = None, *, seed: int = 0, tok: Tokenizer | None = None,
                    tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Save a randomly initialised (seeded) model; ``tensors`` overwrite named parameters first."""
    cfg = cfg or tiny_config()
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for name, value in (tensors or {}).items():
            model.get_parameter(name).copy_(value)
    return save_checkpoint(path, model, cfg, tok if tok is not None else tokenizer())
