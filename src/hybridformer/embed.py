"""``embed``: sentence embeddings from an encoder checkpoint (e.g. a converted BERT/RoBERTa).

Each text is tokenized with the checkpoint's own tokenizer including its special tokens ([CLS] ...
[SEP] for BERT, <s> ... </s> for RoBERTa), cut to the model's ``max_positions``, and encoded in
right-padded batches. ``pool="mean"``: the mean of the non-padding token states, the pooling of
sentence-transformers models such as all-MiniLM-L6-v2; ``pool="cls"``: the first token's state
(BERT's [CLS], for models trained with CLS pooling).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import Tensor

from .checkpoint import Checkpoint, load_checkpoint
from .data.text import pad
from .errors import CheckpointError, ConfigError, DataError
from .models import Encoder
from .names import POOLS
from .outputs import atomic_file


@torch.no_grad()
def embed(checkpoint: str | Path | Checkpoint, texts: Sequence[str], *, batch_size: int = 32,
          device: str | torch.device = "cpu", normalize: bool = False, pool: str = "mean") -> Tensor:
    """(len(texts), d_model) float32 sentence embeddings, ``pool`` ``mean`` or ``cls``; ``normalize`` makes
    each unit length (cosine)."""
    if pool not in POOLS:
        raise ConfigError(f"pool={pool!r} is unknown; choose one of: {', '.join(POOLS)}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint, device)
    model, cfg = ckpt.model.eval(), ckpt.config
    if not isinstance(model, Encoder):
        raise CheckpointError(f"{ckpt.path}: a {cfg.arch} checkpoint does not embed sentences; use an encoder "
                              "(model.arch=encoder_classifier, e.g. a converted BERT or RoBERTa)")
    if ckpt.tokenizer is None:
        raise CheckpointError(f"{ckpt.path}: no tokenizer.json; embedding text needs the model's tokenizer")
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise DataError("embed takes a list of strings")
    tokenizer = Tokenizer.from_str(ckpt.tokenizer.to_str())  # our own batching, not the file's padding
    tokenizer.no_padding()
    tokenizer.no_truncation()
    ids = [_first_tokens(tokenizer, text, cfg.max_positions) for text in texts]
    out = []
    device = next(model.parameters()).device
    for start in range(0, len(ids), batch_size):
        tokens = pad(ids[start: start + batch_size], cfg.pad_id, device)
        pooled = model.sentence_embedding(tokens) if pool == "mean" else model.encode(tokens)[0][:, 0]
        out.append(pooled.float())
    vectors = torch.cat(out) if out else torch.zeros(0, cfg.d_model)
    return torch.nn.functional.normalize(vectors, dim=-1) if normalize else vectors


def _first_tokens(tokenizer: Tokenizer, text: str, limit: int) -> list[int]:
    """The first ``limit`` token ids of ``text`` (a text is cut at ``max_positions``). A huge line is
    tokenized from a prefix (no tokenizer averages 16 characters per token), so a 10 MB line costs
    milliseconds; the prefix is used only when it holds more tokens than are kept, so the result is exact."""
    prefix = text[: 16 * (limit + 4)]
    ids = tokenizer.encode(prefix).ids
    if len(prefix) < len(text) and len(ids) <= limit + 2:
        ids = tokenizer.encode(text).ids
    return ids[:limit]


def embed_lines(checkpoint: Checkpoint, lines: Iterable[str], *, chunk: int = 256, **options: Any) -> Iterator[Tensor]:
    """:func:`embed` over a stream of lines, ``chunk`` lines at a time (so output can stream)."""
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == chunk:
            yield embed(checkpoint, batch, **options)
            batch = []
    if batch:
        yield embed(checkpoint, batch, **options)


def jsonl_rows(vectors: Tensor) -> Iterator[str]:
    """One JSON object per embedding: ``{"embedding": [...]}``."""
    for row in vectors.tolist():
        yield json.dumps({"embedding": row})


def save_embeddings(chunks: Iterable[Tensor], path: Path) -> int:
    """Write the embeddings to ``path``: a ``(n, d_model)`` float32 NumPy array for ``.npy``, JSON lines
    otherwise. Written to a temporary file renamed into place, so a failure leaves no partial output."""
    count = 0
    with atomic_file(path, "wb" if path.suffix == ".npy" else "w") as handle:
        if path.suffix == ".npy":
            import numpy as np

            vectors = torch.cat(list(chunks))
            count = len(vectors)
            np.save(handle, vectors.numpy().astype(np.float32))
        else:
            for vectors in chunks:
                handle.writelines(row + "\n" for row in jsonl_rows(vectors))
                count += len(vectors)
    return count
