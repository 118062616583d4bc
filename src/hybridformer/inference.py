"""The one checkpoint loader for generation, evaluation and classification.

Everything that runs a trained model on text comes through here: :func:`load_checkpoints` loads
the checkpoint(s), :func:`check_capability` checks once that each can do the task (generate text
or predict labels), and several checkpoints become one ensemble — a
:class:`~hybridformer.decoding.Ensemble` Scorer for text, :class:`Classifier` for labels — after
one shared-vocabulary check. The torch engine (``engines/torch.py``) builds its Scorer here, and
``evaluate_classifier`` loads through :func:`load_classifier`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from tokenizers import Tokenizer
from torch import Tensor, nn

from .checkpoint import Checkpoint, load_checkpoint
from .config import ModelConfig
from .decoding import Ensemble, ModelScorer, Scorer
from .decoding.ensemble import Combine, combine_log_probs, member_weights
from .errors import CheckpointError, ConfigError

CheckpointLike = str | Path | Checkpoint
Task = Literal["generate", "evaluate", "classify"]


def load_checkpoints(checkpoints: CheckpointLike | Sequence[CheckpointLike], device: str | torch.device = "cpu",
                     *, task: Task) -> list[Checkpoint]:
    """Load (or take, if already loaded) the checkpoint(s) and check each can do ``task``, and that
    several can form one ensemble (one kind of model, one vocabulary, for classifiers one label set)."""
    items = [checkpoints] if isinstance(checkpoints, CheckpointLike) else list(checkpoints)
    if not items:
        raise ConfigError(f"{task} needs at least one checkpoint")
    ckpts = [item if isinstance(item, Checkpoint) else load_checkpoint(item, device) for item in items]
    for ckpt in ckpts:
        check_capability(ckpt, task)
    check_ensemble(ckpts)
    return ckpts


def check_capability(ckpt: Checkpoint, task: Task) -> None:
    """A checkpoint that cannot do ``task`` fails here, saying what would work instead."""
    classifier = ckpt.config.arch == "encoder_classifier"
    if task == "classify" and not classifier:
        raise CheckpointError(f"{ckpt.path}: a {ckpt.config.arch} checkpoint does not predict labels; "
                              "accuracy needs an encoder_classifier (use --src/--ref for text metrics)")
    if task == "classify" and ckpt.config.num_classes == 0:
        raise CheckpointError(f"{ckpt.path}: a sentence encoder (num_classes=0) has no classification head; use "
                              "hybridformer.embed, or fine-tune it on labeled documents (train.init_from)")
    if task != "classify" and classifier:
        raise CheckpointError(f"{ckpt.path} is an encoder_classifier: it predicts labels and cannot "
                              f"{task} text; use an encoder_decoder or decoder_lm checkpoint")
    if ckpt.tokenizer is None:
        raise CheckpointError(f"{ckpt.path}: no tokenizer.json; {task} needs the tokenizer the model was "
                              "trained with inside the checkpoint")
    if ckpt.tokenizer.get_vocab_size() > ckpt.config.vocab_size:
        raise CheckpointError(f"{ckpt.path}: tokenizer has {ckpt.tokenizer.get_vocab_size()} tokens but the model "
                              f"only {ckpt.config.vocab_size} (vocab_size); they were not trained together")


def check_ensemble(checkpoints: Sequence[Checkpoint]) -> None:
    """Ensemble members must be models of one kind (seq2seq, LM or classifier) sharing one vocabulary;
    classifiers must also share their classes."""
    archs = {c.config.arch for c in checkpoints}
    if len(archs) > 1:
        kinds = ", ".join(f"{c.path}: {c.config.arch}" for c in checkpoints)
        raise CheckpointError(f"ensemble members must all be encoder_decoder or all decoder_lm (or all "
                              f"encoder_classifier) ({kinds})")
    first = checkpoints[0]
    for ckpt in checkpoints[1:]:
        if ckpt.meta.get("labels") != first.meta.get("labels") or ckpt.config.num_classes != first.config.num_classes:
            raise ConfigError(f"ensemble members must share their classes: {first.path} has "
                              f"{first.meta.get('labels')}, {ckpt.path} has {ckpt.meta.get('labels')}")
    check_same_vocabulary([c.path for c in checkpoints], [c.config for c in checkpoints],
                          [c.tokenizer for c in checkpoints])


def check_same_vocabulary(
    paths: Sequence[str | Path], configs: Sequence[ModelConfig], tokenizers: Sequence[Tokenizer | None],
) -> None:
    """Token ids must mean the same in every checkpoint: same vocab size, special ids and tokenizer vocabulary.

    The tokenizers are compared by content (the token -> id table), not by file name or bytes.
    Ensembles, merges, averages and distillation students all check this.
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


# ----------------------------------------------------------------------------- text: a Scorer


def scorer_from_checkpoints(checkpoints: Sequence[Checkpoint], *, weights: Sequence[float] | None = None,
                            combine: Combine = "prob", compile: bool = False) -> Scorer:
    """One checkpoint -> its ModelScorer; several (or explicit weights) -> an :class:`Ensemble`; ``compile``:
    each model's decoding step runs through ``torch.compile``."""
    scorers = [ModelScorer(c.model, compile=compile) for c in checkpoints]
    if len(checkpoints) == 1 and weights is None:
        return scorers[0]
    return Ensemble(scorers, weights=weights, combine=combine)


# ----------------------------------------------------------------------------- labels: a Classifier


@dataclass
class Classifier:
    """One or several ``encoder_classifier`` models whose class probabilities are averaged (weighted),
    by the same rule as an ensemble's next-token distributions (``combine="prob"``)."""

    models: list[nn.Module]
    weights: list[float]
    tokenizer: Tokenizer
    config: ModelConfig
    labels: list[str]
    max_len: int | None  # the length training truncated documents to (``meta.json``), if recorded
    device: torch.device

    @torch.no_grad()
    def probabilities(self, tokens: Tensor) -> Tensor:
        """tokens: (batch, L) -> class probabilities (batch, classes), combined over the members."""
        log_probs = torch.stack([m.eval()(tokens).float().log_softmax(-1) for m in self.models])
        return combine_log_probs(log_probs, self.weights, "prob").exp()


def load_classifier(checkpoints: CheckpointLike | Sequence[CheckpointLike], device: str | torch.device = "cpu",
                    *, weights: Sequence[float] | None = None) -> Classifier:
    """Load the ``encoder_classifier`` checkpoint(s) that will predict labels (several = an ensemble)."""
    ckpts = load_checkpoints(checkpoints, device, task="classify")
    first = ckpts[0]
    labels = first.meta.get("labels") or [str(i) for i in range(first.config.num_classes)]
    return Classifier([c.model for c in ckpts], member_weights(weights, len(ckpts)), first.tokenizer, first.config,
                      labels, first.meta.get("max_len"), torch.device(device))
