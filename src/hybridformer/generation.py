"""``generate``: checkpoint(s) + lines of text -> one output line per input line, streamed.

The searches only ever see a :class:`~hybridformer.decoding.Scorer`; which one is built from the
checkpoints is decided in :func:`hybridformer.inference.load_decoder`, the single place an
ensemble plugs in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .data.text import decode_tokens, encode_checked, pad, token_batches, windows
from .decoding import beam_search, greedy_search, sample_search
from .decoding.logits import max_lengths
from .errors import ConfigError, DataError
from .inference import CheckpointLike, Decoder, load_decoder

if TYPE_CHECKING:
    from .interop.ct2_engine import Ct2Decoder


@dataclass
class GenerationOptions:
    """How to search. ``beam=None`` means 5 for beam search and 1 for sampling; ``max_len_a/b``
    ``None`` mean ``1.2 · src_len + 10`` for seq2seq and ``0 · prompt_len + 100`` for an LM."""

    beam: int | None = None
    lenpen: float = 1.0
    sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_len_a: float | None = None
    max_len_b: int | None = None
    no_repeat_ngram: int = 0
    early_stopping: bool = True
    at_budget: str = "eos"  # beam search at the length budget: "eos" forces EOS (fairseq), "stop" = transformers
    seed: int | None = None
    batch_tokens: int = 4096
    chat: bool = False  # each input line is a user message, wrapped in the checkpoint's chat template
    presence_penalty: float = 0.0  # OpenAI's: the server's language-model routes (torch engine) apply them
    frequency_penalty: float = 0.0

    def check(self) -> None:
        """Validate at the edge: every problem is one ConfigError naming the option."""
        problems = [f"{name} must be a finite number (got {value})" for name, value in vars(self).items()
                    if isinstance(value, float) and not math.isfinite(value)]
        if self.beam is not None and self.beam < 1:
            problems.append(f"beam must be >= 1 (got {self.beam})")
        if self.sample and (self.beam or 1) > 1:
            problems.append("sample draws one continuation per input: use beam 1 (or leave it out) with sampling")
        if self.temperature <= 0:
            problems.append(f"temperature must be > 0 (got {self.temperature}); use greedy search for argmax")
        if self.top_k < 0:
            problems.append(f"top_k must be >= 0, 0 = off (got {self.top_k})")
        if not 0.0 < self.top_p <= 1.0:
            problems.append(f"top_p must be in (0, 1] (got {self.top_p})")
        if self.max_len_a is not None and self.max_len_a < 0:
            problems.append(f"max_len_a must be >= 0 (got {self.max_len_a})")
        if self.max_len_b is not None and self.max_len_b < 0:
            problems.append(f"max_len_b must be >= 0 (got {self.max_len_b})")
        if self.no_repeat_ngram < 0:
            problems.append(f"no_repeat_ngram must be >= 0, 0 = off (got {self.no_repeat_ngram})")
        if self.at_budget not in ("eos", "stop"):
            problems.append(f"at_budget must be 'eos' (fairseq: force EOS at the budget) or 'stop' (transformers' "
                            f"max_new_tokens) (got {self.at_budget!r})")
        for name in ("presence_penalty", "frequency_penalty"):
            if not -2.0 <= getattr(self, name) <= 2.0:
                problems.append(f"{name} must be in [-2, 2] (got {getattr(self, name)})")
        if self.batch_tokens < 1:
            problems.append(f"batch_tokens must be >= 1 (got {self.batch_tokens})")
        if problems:
            raise ConfigError("; ".join(problems))

    @classmethod
    def parse(cls, options: dict) -> GenerationOptions:
        """Options from keyword arguments, checked; an unknown name is a ConfigError listing the known ones."""
        unknown = sorted(set(options) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown generation option(s) {', '.join(unknown)}; "
                              f"known: {', '.join(cls.__dataclass_fields__)}")
        opts = cls(**options)
        opts.check()
        return opts

    @property
    def beam_size(self) -> int:
        return self.beam if self.beam is not None else (1 if self.sample else 5)

    def length_budget(self, seq2seq: bool) -> tuple[float, int]:
        """``(a, b)`` of the output budget ``a · src_len + b`` with the defaults filled in."""
        a, b = (1.2, 10) if seq2seq else (0.0, 100)
        return (a if self.max_len_a is None else self.max_len_a), (b if self.max_len_b is None else self.max_len_b)


def generate(
    checkpoints: CheckpointLike | Sequence[CheckpointLike], inputs: Iterable[str], *,
    device: str | torch.device = "cpu", weights: Sequence[float] | None = None, combine: str = "prob",
    engine: str = "torch", quantization: str | None = None, adapter: str | Path | None = None, **options,
) -> Iterator[str]:
    """Decode every input line; yields one output line per input line, in input order, as soon as
    its window of ~``4 · batch_tokens`` input tokens is done.

    ``options`` are the fields of :class:`GenerationOptions` (``beam``, ``lenpen``, ``sample``,
    ``temperature``, ``top_k``, ``top_p``, ``max_len_a``, ``max_len_b``, ``no_repeat_ngram``,
    ``early_stopping``, ``at_budget``, ``seed``, ``batch_tokens``). Several checkpoints decode as one ensemble
    (``weights``, ``combine`` as in :func:`~hybridformer.inference.load_decoder`). ``engine="ct2"`` decodes
    with CTranslate2 (``quantization`` as there); ``adapter`` folds a LoRA adapter in. Checkpoints and options
    are checked now; the input is read lazily while iterating (an input without lines is a :class:`DataError`).
    """
    opts = GenerationOptions.parse(options)
    decoder = load_decoder(checkpoints, device, weights=weights, combine=combine, engine=engine,
                           quantization=quantization, adapter=adapter)
    return stream_outputs(decoder, inputs, opts)


def stream_outputs(decoder: Decoder, inputs: Iterable[str], opts: GenerationOptions) -> Iterator[str]:
    generator = torch.Generator(device=decoder.device)
    if opts.seed is not None:
        generator.manual_seed(opts.seed)
    if opts.chat:
        if decoder.chat_template is None or decoder.config.is_seq2seq:
            raise ConfigError(f"{decoder.name}: no chat template (tokenizer_config.json chat_template); --chat "
                              "needs an instruct model converted with `hybridformer convert`")
        inputs = (decoder.chat_template.prompt(line) for line in inputs)
    encoded = (encode_checked(decoder.tokenizer, line, decoder.config, number)
               for number, line in enumerate(inputs, start=1))
    count = 0
    for window in windows(encoded, 4 * opts.batch_tokens):
        for ids in decode_sources(decoder, window, opts, generator):
            yield decode_tokens(decoder.tokenizer, ids)
        count += len(window)
    if count == 0:
        raise DataError("no input lines to generate from")


def decode_sources(decoder: Decoder | Ct2Decoder, sources: list[list[int]], opts: GenerationOptions,
                   generator: torch.Generator | None = None) -> list[list[int]]:
    """Output token ids for every source, in order, decoded in length-sorted batches of ``opts.batch_tokens``
    (LM prompts batch only with prompts of their length)."""
    outputs: dict[int, list[int]] = {}
    lengths = [len(ids) for ids in sources]
    for batch in token_batches(lengths, opts.batch_tokens, rows_per_item=opts.beam_size,
                               same_length=not decoder.config.is_seq2seq):
        outputs.update(zip(batch, decode_batch(decoder, [sources[i] for i in batch], opts, generator), strict=True))
    return [outputs[i] for i in range(len(sources))]


def output_budget(cfg, opts, lengths: Tensor, *, prefix_len: int, src_len: int) -> Tensor:
    """New tokens each row may produce: ``max_len_a · length + max_len_b``, capped at ``max_positions``
    (so ``--max-len-b 100000000`` cannot decode for ever) and, for learned positions, at what the table
    has left after the ``prefix_len`` tokens already fed; an input the table cannot hold is a DataError."""
    a, b = opts.length_budget(cfg.is_seq2seq)
    cap = cfg.max_positions
    if cfg.position == "learned":  # learned position tables end at max_positions
        cap = cfg.max_positions - prefix_len
        if cap < 1 or src_len > cfg.max_positions:
            raise DataError(f"an input of {src_len} tokens does not fit max_positions={cfg.max_positions} "
                            "of this model's learned positions; shorten the line")
    return max_lengths(lengths, a, b, cap=cap)


def decode_batch(decoder: Decoder | Ct2Decoder, sources: list[list[int]], opts: GenerationOptions,
                 generator: torch.Generator | None = None) -> list[list[int]]:
    """Token ids of one batch in, output token ids out (LM prompts in a batch share one length)."""
    if opts.presence_penalty or opts.frequency_penalty:
        raise ConfigError("presence_penalty and frequency_penalty apply to greedy search and sampling of a language "
                          "model on the torch engine (hybridformer serve's OpenAI routes)")
    if not isinstance(decoder, Decoder):  # another engine (CTranslate2) searches by itself
        return decoder.decode_batch(sources, opts, generator)
    cfg, scorer = decoder.config, decoder.scorer
    src = pad(sources, cfg.pad_id, decoder.device)
    if cfg.is_seq2seq:
        state = scorer.init_state(src)
        prefix = torch.full((len(sources), 1), cfg.start_id, dtype=torch.long, device=decoder.device)
        lengths = src.ne(cfg.pad_id).sum(1) - 1  # source tokens, EOS not counted
    else:
        state, prefix, lengths = scorer.init_state(None), src, torch.tensor([src.shape[1]] * len(sources))
    budget = output_budget(cfg, opts, lengths, prefix_len=prefix.shape[1], src_len=src.shape[1]).to(decoder.device)
    common = {"eos_id": cfg.eos_id, "no_repeat_ngram": opts.no_repeat_ngram}
    if opts.sample:
        return sample_search(scorer, state, prefix, max_new_tokens=budget, temperature=opts.temperature,
                             top_k=opts.top_k, top_p=opts.top_p, generator=generator, **common)
    if opts.beam_size == 1:
        return greedy_search(scorer, state, prefix, max_new_tokens=budget, **common)
    hyps = beam_search(scorer, state, prefix, beam=opts.beam_size, max_len=budget, lenpen=opts.lenpen,
                       early_stopping=opts.early_stopping, at_budget=opts.at_budget, **common)
    return [h.tokens for h in hyps]
