"""``evaluate_classifier``: accuracy of an ``encoder_classifier`` checkpoint on labeled documents.

The checkpoint carries what evaluation must repeat from training (``meta.json``): the class
labels in class-id order and the length documents were truncated to. Several checkpoints are an
ensemble that averages the class probabilities (they must share labels and tokenizer).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .checkpoint import Checkpoint, load_checkpoint
from .data.batching import collate, make_batches
from .data.classification import classification_examples, read_documents, shuffled
from .errors import CheckpointError, ConfigError, DataError
from .fusion.checks import check_same_vocabulary
from .metrics import MetricResult

CheckpointLike = str | Path | Checkpoint


def evaluate_classifier(
    checkpoints: CheckpointLike | Sequence[CheckpointLike], data: str | Path, *, format: str = "auto",
    split: str = "test", text_field: str = "text", label_field: str = "label", limit: int | None = None,
    seed: int = 0, max_len: int | None = None, batch_tokens: int = 16384, device: str | torch.device = "cpu",
) -> MetricResult:
    """Accuracy (%) of the checkpoint(s) on labeled documents.

    ``data``: a JSONL file (``text_field``/``label_field``) or a directory / tar archive of
    ``<split>/<label>/*.txt`` (``format`` ``auto`` tells them apart by the name). ``limit``: score a
    fixed random subset of that many documents, drawn with ``seed``. ``max_len``: truncation, by
    default the training run's (``data.max_src_len``). ``details`` hold the counts, the mean
    negative log-likelihood per document and the accuracy of each class.
    """
    ckpts = _load(checkpoints, device)
    labels, tokenizer = ckpts[0].meta.get("labels"), ckpts[0].tokenizer
    labels = labels or [str(i) for i in range(ckpts[0].config.num_classes)]
    max_len = max_len or ckpts[0].meta.get("max_len") or 4096
    documents = read_documents(data, format=format, split=split, text_field=text_field, label_field=label_field)
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1 (got {limit})")
    total = len(documents)
    if limit is not None:
        documents = shuffled(documents, seed)[:limit]
    examples, report = classification_examples(documents, tokenizer, labels, max_len=max_len, source=str(data))
    if not examples:
        raise DataError(f"{data}: no non-empty documents to classify")
    probs = _class_probabilities([c.model for c in ckpts], examples, ckpts[0].config.pad_id,
                                 max(batch_tokens, max_len), torch.device(device))
    gold = torch.tensor([ex.label for ex in examples])
    right = probs.argmax(-1).eq(gold)
    nll = -probs.gather(1, gold[:, None]).clamp(min=1e-12).log().mean().item()
    details = {"correct": int(right.sum()), "documents": len(examples), "nll": nll,
               "dropped_empty": report.dropped_empty}
    for class_id, name in enumerate(labels):
        mine = gold.eq(class_id)
        if mine.any():
            details[f"accuracy_{name}"] = 100.0 * int(right[mine].sum()) / int(mine.sum())
    subset = f"random {len(documents)} of {total} (seed {seed})" if limit is not None else f"all {total}"
    signature = (f"accuracy|{Path(str(data)).name}|split:{split}|docs:{subset}|max_len:{max_len}|"
                 f"models:{len(ckpts)}")
    return MetricResult("accuracy", 100.0 * int(right.sum()) / len(examples), signature, details)


def _load(checkpoints: CheckpointLike | Sequence[CheckpointLike], device: str | torch.device) -> list[Checkpoint]:
    items = [checkpoints] if isinstance(checkpoints, CheckpointLike) else list(checkpoints)
    if not items:
        raise ConfigError("evaluate needs at least one checkpoint")
    ckpts = [item if isinstance(item, Checkpoint) else load_checkpoint(item, device) for item in items]
    first = ckpts[0]
    for ckpt in ckpts:
        if ckpt.config.arch != "encoder_classifier":
            raise CheckpointError(f"{ckpt.path}: a {ckpt.config.arch} checkpoint does not predict labels; "
                                  "accuracy needs an encoder_classifier (use --src/--ref for text metrics)")
        if ckpt.config.num_classes == 0:
            raise CheckpointError(f"{ckpt.path}: a sentence encoder (num_classes=0) has no classification head; "
                                  "fine-tune it on labeled documents first (train.init_from)")
        if ckpt.tokenizer is None:
            raise CheckpointError(f"{ckpt.path}: no tokenizer.json; the classifier's tokenizer must be inside it")
        if ckpt.meta.get("labels") != first.meta.get("labels") or ckpt.config.num_classes != first.config.num_classes:
            raise ConfigError(f"ensemble members must share their classes: {first.path} has "
                              f"{first.meta.get('labels')}, {ckpt.path} has {ckpt.meta.get('labels')}")
    check_same_vocabulary([c.path for c in ckpts], [c.config for c in ckpts], [c.tokenizer for c in ckpts])
    return ckpts


@torch.no_grad()
def _class_probabilities(models: list[torch.nn.Module], examples: list, pad_id: int, batch_tokens: int,
                         device: torch.device) -> torch.Tensor:
    """(documents, classes) probabilities, averaged over ``models``, in the order of ``examples``."""
    out = torch.empty(len(examples), 0)
    for indices in make_batches([ex.size for ex in examples], batch_tokens, seed=0, epoch=0, shuffle=False):
        src = collate([examples[i] for i in indices], pad_id)["src"].to(device)
        probs = torch.stack([model.eval()(src).float().softmax(-1) for model in models]).mean(0).cpu()
        if out.shape[1] == 0:
            out = torch.zeros(len(examples), probs.shape[1])
        out[indices] = probs
    return out
