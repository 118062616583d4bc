"""``embed``: mean-pooled sentence embeddings from an encoder checkpoint (e.g. a converted BERT/RoBERTa).

Each text is tokenized with the checkpoint's own tokenizer including its special tokens ([CLS] ...
[SEP] for BERT, <s> ... </s> for RoBERTa), cut to the model's ``max_positions``, and encoded in
right-padded batches; the embedding is the mean of the non-padding token states, the pooling of
sentence-transformers models such as all-MiniLM-L6-v2.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import Tensor

from .checkpoint import Checkpoint, load_checkpoint
from .errors import CheckpointError, DataError
from .models import Encoder


@torch.no_grad()
def embed(checkpoint: str | Path | Checkpoint, texts: Sequence[str], *, batch_size: int = 32,
          device: str | torch.device = "cpu", normalize: bool = False) -> Tensor:
    """(len(texts), d_model) float32 sentence embeddings; ``normalize`` makes each unit length (cosine)."""
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint, device)
    model, cfg = ckpt.model.eval(), ckpt.config
    if not isinstance(model, Encoder):
        raise CheckpointError(f"{ckpt.path}: a {cfg.arch} checkpoint does not embed sentences; use an encoder "
                              "(model.arch=encoder_classifier, e.g. a converted BERT or RoBERTa)")
    if ckpt.tokenizer is None:
        raise CheckpointError(f"{ckpt.path}: no tokenizer.json; embedding text needs the model's tokenizer")
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise DataError("embed takes a list of strings")
    limit = cfg.max_positions if cfg.position == "learned" else None
    tokenizer = Tokenizer.from_str(ckpt.tokenizer.to_str())  # our own batching, not the file's padding
    tokenizer.no_padding()
    tokenizer.no_truncation()
    ids = [tokenizer.encode(text).ids[:limit] for text in texts]
    out = []
    device = next(model.parameters()).device
    for start in range(0, len(ids), batch_size):
        rows = ids[start: start + batch_size]
        tokens = torch.full((len(rows), max(len(r) for r in rows)), cfg.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        out.append(model.sentence_embedding(tokens.to(device)).float())
    vectors = torch.cat(out) if out else torch.zeros(0, cfg.d_model)
    return torch.nn.functional.normalize(vectors, dim=-1) if normalize else vectors
