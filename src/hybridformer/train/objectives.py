"""What the training loop needs to know about a task, in one small adapter per kind of model.

The loop (``trainer.py``) is the same for every model: batches in, cross-entropy out, AdamW,
checkpoints. An :class:`Objective` supplies the task-specific parts — reading and tokenizing the
data, the model config that fits it, running the model on a padded batch, which targets the
cross-entropy compares with, and extra counts worth logging. ``TokenObjective`` predicts tokens
(encoder-decoder, decoder LM); ``ClassificationObjective`` predicts one label per document
(``encoder_classifier``, e.g. the Long Range Arena text task, Tay et al., 2021).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tokenizers import Tokenizer
from torch import Tensor, nn

from ..config import ExperimentConfig, ModelConfig
from ..data.classification import (
    Document,
    classification_examples,
    label_names,
    read_documents,
    read_label_folders,
    shuffled,
)
from ..data.datasets import Example
from ..errors import ConfigError, DataError
from .setup import RawData, log_report, model_config_for, read_raw, tokenize

Log = Callable[[str], None]


class Objective(Protocol):
    meta: dict[str, Any]  # written into every checkpoint's meta.json (e.g. the class labels)

    def read(self) -> RawData: ...

    def model_config(self, tokenizer: Tokenizer) -> ModelConfig: ...

    def examples(self, raw: RawData, tokenizer: Tokenizer, log: Log) -> tuple[list[Example], list[Example]]: ...

    def logits(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """Scores the cross-entropy reads: (..., classes) aligned with :meth:`targets`."""

    def targets(self, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
        """The class each score row must predict, and the target value that means "ignore"."""

    def counts(self, logits: Tensor, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Named sums over the batch's targets, logged divided by the number of targets (e.g. accuracy)."""

    def units(self, batch: dict[str, Tensor], targets: Tensor) -> Tensor:
        """Tokens this batch processed, for the tokens/s throughput."""

    def scores(self, valid_loss: float) -> dict[str, float]:
        """Validation numbers derived from the validation loss (perplexity)."""


@dataclass
class TokenObjective:
    """Next-token prediction: seq2seq (teacher-forced decoder) or a causal LM."""

    cfg: ExperimentConfig
    meta: dict[str, Any] = field(default_factory=dict)

    def read(self) -> RawData:
        return read_raw(self.cfg.data, self.cfg.model.arch == "decoder_lm")

    def model_config(self, tokenizer: Tokenizer) -> ModelConfig:
        return model_config_for(self.cfg.model, tokenizer, init_from=self.cfg.train.init_from)

    def examples(self, raw: RawData, tokenizer: Tokenizer, log: Log) -> tuple[list[Example], list[Example]]:
        return tokenize(self.cfg, raw, tokenizer, log)

    def logits(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return model(batch["src"], batch["tgt_in"]) if "src" in batch else model(batch["tgt_in"])

    def targets(self, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
        return batch["tgt_out"], self.cfg.model.pad_id

    def counts(self, logits: Tensor, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {}

    def units(self, batch: dict[str, Tensor], targets: Tensor) -> Tensor:
        return targets.ne(self.cfg.model.pad_id).sum()

    def scores(self, valid_loss: float) -> dict[str, float]:
        return {"ppl": math.exp(min(valid_loss, 50.0))}


@dataclass
class LabeledData(RawData):
    """Labeled documents (train and validation) and the class list taken from the training labels."""

    labels: list[str] | None = None

    def texts(self) -> list[str]:
        return [doc.text for doc in self.train]


@dataclass
class ClassificationObjective:
    """One label per document from the mean-pooled encoder (``Encoder``); documents truncated to max_src_len."""

    cfg: ExperimentConfig
    meta: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)

    def read(self) -> LabeledData:
        train, valid = read_labeled(self.cfg)
        self.labels = label_names(doc.label for doc in train)
        if len(self.labels) < 2:
            raise DataError(f"{self.cfg.data.train_file}: classification needs at least two labels, found "
                            f"{self.labels or 'none'}")
        self.meta = {"labels": self.labels, "max_len": self.cfg.data.max_src_len}
        return LabeledData(train, valid, labels=self.labels)

    def model_config(self, tokenizer: Tokenizer) -> ModelConfig:
        return model_config_for(self.cfg.model, tokenizer).model_copy(update={"num_classes": len(self.labels)})

    def examples(self, raw: RawData, tokenizer: Tokenizer, log: Log) -> tuple[list[Example], list[Example]]:
        data, out = self.cfg.data, []
        for name, documents, limit in (("train", raw.train, data.limit_train), ("valid", raw.valid, data.limit_valid)):
            examples, report = classification_examples(documents, tokenizer, self.labels,
                                                       max_len=data.max_src_len, source=name)
            if limit is not None and limit < len(examples):
                examples = examples[:limit]
                report.notes.append(f"limited to the first {limit} (data.limit_{name}, a seeded random subset)")
            log_report(report, log)
            if not examples:
                raise ConfigError(f"no {name} documents left (all empty?); check data.train_file")
            out.append(examples)
        log(f"classes: {', '.join(self.labels)}")
        return out[0], out[1]

    def logits(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return model(batch["src"])

    def targets(self, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
        return batch["labels"], -100

    def counts(self, logits: Tensor, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"accuracy": logits.argmax(-1).eq(batch["labels"]).sum()}

    def units(self, batch: dict[str, Tensor], targets: Tensor) -> Tensor:
        return batch["src"].ne(self.cfg.model.pad_id).sum()

    def scores(self, valid_loss: float) -> dict[str, float]:
        return {}


def objective_for(cfg: ExperimentConfig) -> TokenObjective | ClassificationObjective:
    return ClassificationObjective(cfg) if cfg.model.arch == "encoder_classifier" else TokenObjective(cfg)


def read_labeled(cfg: ExperimentConfig) -> tuple[list[Document], list[Document]]:
    """Training and validation documents, each in a seeded random order (files list them by label).

    Without a validation source the last ``data.valid_fraction`` of the shuffled training documents
    is held out, so ``data.limit_train`` (the first N) never overlaps it.
    """
    data = cfg.data
    if data.train_file is None:
        raise ConfigError("data.train_file: classification needs labeled documents (a JSONL file, or a directory/"
                          "archive of <split>/<label>/*.txt with data.format=folders)")
    valid: list[Document] | None = None
    if data.format == "jsonl":
        fields = {"format": "jsonl", "text_field": data.text_field, "label_field": data.label_field,
                  "labels": data.labels}
        train = read_documents(data.train_file, **fields)
        if data.valid_file is not None:
            valid = read_documents(data.valid_file, **fields)
    else:
        valid_path = data.valid_file or data.train_file
        same = data.valid_split is not None and valid_path == data.train_file
        splits = [data.train_split] + ([data.valid_split] if same else [])
        found = read_label_folders(data.train_file, splits, data.labels)
        train = found[data.train_split]
        if data.valid_split is not None:
            valid = found[data.valid_split] if same else read_label_folders(
                valid_path, [data.valid_split], data.labels)[data.valid_split]
        elif data.valid_file is not None:
            raise ConfigError("data.valid_file: with data.format=folders also set data.valid_split (its split folder)")
    train = shuffled(train)
    if valid is None:
        cut = max(1, round(len(train) * data.valid_fraction))
        if cut >= len(train):
            raise DataError(f"{data.train_file}: {len(train)} documents are too few to hold out a validation set")
        train, valid = train[:-cut], train[-cut:]
    return train, shuffled(valid)

