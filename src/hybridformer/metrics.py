"""Scores for generated text and for models: sacreBLEU BLEU and chrF (Post, 2018), ROUGE-1/2/L
(Lin, 2004) through Google's ``rouge-score``, and perplexity / bits per token and per character
from teacher-forced log-likelihoods.

Every result carries a signature string saying exactly how it was computed, so numbers from
different runs can be compared (or shown not to be comparable).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import DataError


@dataclass
class MetricResult:
    metric: str  # bleu | chrf | rouge | ppl
    score: float  # the headline number (BLEU, chrF, ROUGE-L F1 · 100, perplexity)
    signature: str
    details: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        extra = "  ".join(f"{k}={v:.4g}" for k, v in self.details.items())
        return f"{self.metric.upper()} = {self.score:.2f}{'  ' + extra if extra else ''}\n{self.signature}"

    def as_dict(self) -> dict:
        return {"metric": self.metric, "score": self.score, "signature": self.signature, "details": self.details}


def _check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise DataError(f"{len(hypotheses)} hypotheses but {len(references)} references: "
                        "they must pair up line by line")
    if not references:
        raise DataError("nothing to score: no references")


def bleu(hypotheses: Sequence[str], references: Sequence[str], **options) -> MetricResult:
    """Corpus BLEU exactly as ``sacrebleu`` computes it (``options`` go to ``sacrebleu.metrics.BLEU``)."""
    from sacrebleu.metrics import BLEU

    _check_pairs(hypotheses, references)
    metric = BLEU(**options)
    result = metric.corpus_score(list(hypotheses), [list(references)])
    details = {f"p{n + 1}": p for n, p in enumerate(result.precisions)}
    details.update(bp=result.bp, ratio=result.ratio, hyp_len=result.sys_len, ref_len=result.ref_len)
    return MetricResult("bleu", result.score, str(metric.get_signature()), details)


def chrf(hypotheses: Sequence[str], references: Sequence[str], **options) -> MetricResult:
    """Corpus chrF (Popović, 2015) as ``sacrebleu`` computes it; ``word_order=2`` gives chrF++."""
    from sacrebleu.metrics import CHRF

    _check_pairs(hypotheses, references)
    metric = CHRF(**options)
    result = metric.corpus_score(list(hypotheses), [list(references)])
    return MetricResult("chrf", result.score, str(metric.get_signature()))


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge(hypotheses: Sequence[str], references: Sequence[str], *, use_stemmer: bool = True) -> MetricResult:
    """Mean sentence-level ROUGE-1/2/L F1 (· 100) from ``rouge-score``; the headline is ROUGE-L."""
    from rouge_score import rouge_scorer

    _check_pairs(hypotheses, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hyp, ref in zip(hypotheses, references, strict=True):
        scores = scorer.score(ref, hyp)  # rouge-score takes (target, prediction)
        for name in ROUGE_TYPES:
            totals[name] += scores[name].fmeasure
    details = {name: 100 * total / len(references) for name, total in totals.items()}
    signature = f"rouge-score:{version('rouge-score')}|stemmer:{'yes' if use_stemmer else 'no'}|f1|mean"
    return MetricResult("rouge", details["rougeL"], signature, details)


# ----------------------------------------------------------------------------- likelihood


@torch.no_grad()
def token_nll(model: nn.Module, inputs: Tensor, labels: Tensor, pad_id: int, src: Tensor | None = None) -> float:
    """Summed negative log-likelihood (nats) of ``labels`` under teacher forcing; padding not counted.

    inputs, labels: (batch, T); ``src`` (batch, S) for an encoder-decoder, ``None`` for an LM.
    """
    logits = model(src, inputs) if src is not None else model(inputs)
    return float(F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=pad_id,
                                 reduction="sum"))


def perplexity(nll: float, tokens: int, chars: int, *, signature: str) -> MetricResult:
    """Perplexity exp(nll / tokens), bits per token and bits per character from summed nats.

    Bits per character does not depend on the tokenizer, so it compares models with different ones.
    """
    if tokens == 0 or chars == 0:
        raise DataError("nothing to score: the reference text has no tokens")
    bits = nll / math.log(2)
    details = {"bits_per_token": bits / tokens, "bits_per_char": bits / chars, "tokens": tokens, "chars": chars}
    return MetricResult("ppl", math.exp(min(nll / tokens, 700.0)), signature, details)


METRICS = {"bleu": bleu, "chrf": chrf, "rouge": rouge}  # text metrics: (hypotheses, references) -> result
