"""``evaluate``: score a checkpoint on a source/reference pair — BLEU, chrF, ROUGE on its generated
outputs, or perplexity / bits per char of the references under teacher forcing."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from .data.text import encode_source, read_all, token_batches
from .engines import Engine, GenerationOptions, load_engine
from .errors import ConfigError, DataError
from .generation import stream_outputs
from .inference import CheckpointLike
from .metrics import METRICS, MetricResult, perplexity

Lines = str | Path | Sequence[str]
Progress = Callable[[int, int], None]  # (units scored, units in all)


class EvaluationInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a signal the caller turns into ``KeyboardInterrupt``) stopped the scoring: ``result`` is the score
    over what was scored so far, marked ``partial`` (None when nothing was)."""

    def __init__(self, result: MetricResult | None) -> None:
        super().__init__()
        self.result = result


@contextmanager
def _partial_on_interrupt(score: Callable[[], MetricResult | None], extent: Callable[[], str]) -> Iterator[None]:
    """An interrupt inside the block becomes :class:`EvaluationInterrupted` carrying ``score()``, marked with
    ``extent()`` ("40 of 100 lines")."""
    try:
        yield
    except KeyboardInterrupt:
        result = score()
        if result is not None:
            result.partial = extent()
        raise EvaluationInterrupted(result) from None


def _ignore(done: int, total: int) -> None:
    pass


def evaluate(
    checkpoints: CheckpointLike | Sequence[CheckpointLike], src: Lines | None, ref: Lines, *,
    metric: str = "bleu", context: int = 256, device: str | torch.device = "cpu",
    weights: Sequence[float] | None = None, combine: str = "prob", engine: str = "torch",
    quantization: str | None = None, tokenize: str | None = None, lang: str = "en",
    adapter: str | Path | None = None, progress: Progress | None = None, **options,
) -> MetricResult:
    """Score ``checkpoints`` on ``ref`` (a file, ``-``, or a list of lines).

    bleu / chrf / rouge: decode ``src`` with :func:`~hybridformer.generate` (``options`` as there)
    and compare with ``ref`` line by line — encoder-decoder checkpoints only.
    ppl: teacher-forced likelihood of ``ref`` — given ``src`` for an encoder-decoder (per line,
    EOS included); for a language model, ``ref`` as one text stream (no ``src``) scored in
    blocks of ``context`` tokens, each block seeing only its own past.
    ``engine`` names an entry of :data:`~hybridformer.engines.ENGINES` (``quantization`` as in ``load_engine``).
    ``tokenize`` (bleu only): sacreBLEU's tokenizer name, or ``"moses-lc"`` for BLEU on lowercased
    text Moses-tokenized for ``lang`` (the target language), as fairseq-trained papers report it.
    ``adapter`` folds a LoRA adapter into the checkpoint. ``progress(done, total)`` is called as lines (blocks
    for a language model's ppl) are scored. A ``KeyboardInterrupt`` while scoring raises
    :class:`EvaluationInterrupted`, which carries the score over what was scored so far, marked ``partial``.
    """
    if metric not in (*METRICS, "ppl"):
        raise ConfigError(f"metric {metric!r} unknown; choose one of: {', '.join((*METRICS, 'ppl'))}")
    if tokenize is not None and metric != "bleu":
        raise ConfigError(f"--tokenize applies to --metric bleu, not {metric}")
    scoring = {"tokenize": tokenize, "lang": lang} if tokenize is not None else {}
    decoder = load_engine(checkpoints, device, purpose="evaluate", weights=weights, combine=combine, engine=engine,
                          quantization=quantization, adapter=adapter)
    seq2seq, path = decoder.config.is_seq2seq, decoder.name
    if not seq2seq and metric != "ppl":
        raise ConfigError(f"{path} is a decoder_lm checkpoint: {metric} scores seq2seq outputs against "
                          "references; for a language model use --metric ppl")
    if seq2seq and src is None:
        raise ConfigError(f"{path} is an encoder_decoder checkpoint: {metric} needs --src (the source lines)")
    if not seq2seq and src is not None:
        raise ConfigError(f"{path} is a decoder_lm checkpoint: ppl scores --ref as one text; drop --src")
    references = read_all(ref)
    sources = read_all(src) if src is not None else None
    if sources is not None and len(sources) != len(references):
        raise DataError(f"{_label(src, 'the source list')} has {len(sources)} lines but "
                        f"{_label(ref, 'the reference list')} has {len(references)}; "
                        "source and reference must pair up line by line")
    progress = progress or _ignore
    if metric != "ppl":
        return _text_metric(decoder, sources, references, GenerationOptions.parse(options), metric, scoring, progress)
    batch_tokens = GenerationOptions.parse(options).batch_tokens
    if seq2seq:
        return _seq2seq_perplexity(decoder, sources, references, batch_tokens, progress)
    return _lm_perplexity(decoder, references, context, progress)


def _text_metric(decoder: Engine, sources: list[str], references: list[str], opts: GenerationOptions, metric: str,
                 scoring: dict, progress: Progress) -> MetricResult:
    outputs: list[str] = []

    def score() -> MetricResult | None:
        return METRICS[metric](outputs, references[: len(outputs)], **scoring) if outputs else None

    with _partial_on_interrupt(score, lambda: f"{len(outputs)} of {len(references)} lines"):
        for output in stream_outputs(decoder, sources, opts):  # in input order
            outputs.append(output)
            progress(len(outputs), len(references))
    return score()


def _seq2seq_perplexity(decoder: Engine, sources: list[str], references: list[str], batch_tokens: int,
                        progress: Progress) -> MetricResult:
    cfg = decoder.config
    src = [encode_source(decoder.tokenizer, line, cfg) for line in sources]
    tgt = [decoder.tokenizer.encode(line, add_special_tokens=False).ids for line in references]
    nll, tokens, chars, lines = 0.0, 0, 0, 0

    def score() -> MetricResult | None:
        signature = "ppl|seq2seq|teacher-forced|per-line|eos:yes"
        return perplexity(nll, tokens, chars, signature=signature) if lines else None

    lengths = [len(s) + len(t) + 1 for s, t in zip(src, tgt, strict=True)]
    with _partial_on_interrupt(score, lambda: f"{lines} of {len(references)} lines"):
        for batch in token_batches(lengths, batch_tokens):
            batch_nll, batch_tokens_scored = decoder.nll([src[i] for i in batch], [tgt[i] for i in batch])
            nll, tokens = nll + batch_nll, tokens + batch_tokens_scored
            chars += sum(len(references[i]) + 1 for i in batch)  # EOS counts as the line's newline
            lines += len(batch)
            progress(lines, len(references))
    return score()


def _lm_perplexity(decoder: Engine, references: list[str], context: int, progress: Progress) -> MetricResult:
    if context < 1:
        raise ConfigError(f"context must be >= 1 (got {context})")
    cfg = decoder.config
    text = "\n".join(references) + "\n"
    encoding = decoder.tokenizer.encode(text, add_special_tokens=False)
    ids = encoding.ids
    if len(ids) < 2:
        raise DataError(f"{len(ids)} token(s) of reference text: perplexity needs at least 2")
    context = min(context, cfg.position_capacity())
    starts = range(0, len(ids) - 1, context)  # block i predicts tokens start+1 .. start+context
    nll, scored, blocks = 0.0, 0, 0

    def score() -> MetricResult | None:
        if not scored:
            return None
        end = len(text) if scored == len(ids) - 1 else encoding.offsets[scored][1]
        chars = end - encoding.offsets[0][1]  # the first token is context, not scored
        return perplexity(nll, scored, max(chars, 1), signature=f"ppl|lm|teacher-forced|stream|context:{context}")

    with _partial_on_interrupt(score, lambda: f"{blocks} of {len(starts)} blocks"):
        for start in starts:
            nll += decoder.nll([ids[start : start + context + 1]])[0]
            scored, blocks = min(start + context, len(ids) - 1), blocks + 1
            progress(blocks, len(starts))
    return score()


def _label(lines: Lines, default: str) -> str:
    return str(lines) if isinstance(lines, str | Path) else default
