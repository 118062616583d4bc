"""``evaluate_classifier``: accuracy of an ``encoder_classifier`` checkpoint on labeled documents.

The checkpoint carries what evaluation must repeat from training (``meta.json``): the class
labels in class-id order and the length documents were truncated to. Several checkpoints are an
ensemble that averages the class probabilities (they must share labels and tokenizer).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .data.batching import collate, make_batches
from .data.classification import classification_examples, read_documents, shuffled
from .errors import ConfigError, DataError
from .inference import CheckpointLike, Classifier, load_classifier
from .metrics import MetricResult


def evaluate_classifier(
    checkpoints: CheckpointLike | Sequence[CheckpointLike], data: str | Path, *, format: str = "auto",
    split: str = "test", text_field: str = "text", label_field: str = "label", limit: int | None = None,
    seed: int = 0, max_len: int | None = None, batch_tokens: int = 16384, device: str | torch.device = "cpu",
    weights: Sequence[float] | None = None,
) -> MetricResult:
    """Accuracy (%) of the checkpoint(s) on labeled documents.

    ``data``: a JSONL file (``text_field``/``label_field``) or a directory / tar archive of
    ``<split>/<label>/*.txt`` (``format`` ``auto`` tells them apart by the name). ``limit``: score a
    fixed random subset of that many documents, drawn with ``seed``. ``max_len``: truncation, by
    default the training run's (``data.max_src_len``). ``weights``: relative weights of ensemble
    members (default equal). ``details`` hold the counts, the mean negative log-likelihood per
    document and the accuracy of each class.
    """
    classifier = load_classifier(checkpoints, device, weights=weights)
    labels = classifier.labels
    max_len = max_len or classifier.max_len or 4096
    documents = read_documents(data, format=format, split=split, text_field=text_field, label_field=label_field)
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1 (got {limit})")
    total = len(documents)
    if limit is not None:
        documents = shuffled(documents, seed)[:limit]
    examples, report = classification_examples(documents, classifier.tokenizer, labels, max_len=max_len,
                                               source=str(data))
    if not examples:
        raise DataError(f"{data}: no non-empty documents to classify")
    probs = _class_probabilities(classifier, examples, max(batch_tokens, max_len))
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
                 f"models:{len(classifier.models)}")
    return MetricResult("accuracy", 100.0 * int(right.sum()) / len(examples), signature, details)


def _class_probabilities(classifier: Classifier, examples: list, batch_tokens: int) -> torch.Tensor:
    """(documents, classes) probabilities of the (ensembled) classifier, in the order of ``examples``."""
    out = torch.empty(len(examples), 0)
    for indices in make_batches([ex.size for ex in examples], batch_tokens, seed=0, epoch=0, shuffle=False):
        src = collate([examples[i] for i in indices], classifier.config.pad_id)["src"].to(classifier.device)
        probs = classifier.probabilities(src).cpu()
        if out.shape[1] == 0:
            out = torch.zeros(len(examples), probs.shape[1])
        out[indices] = probs
    return out
