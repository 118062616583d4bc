"""How to search (:class:`GenerationOptions`) and how many tokens each row may produce (:func:`output_budget`):
what every engine reads, so ``--beam 5`` or ``--max-len-b 20`` mean the same on all of them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from ..config import ModelConfig
from ..decoding.logits import max_lengths
from ..errors import ConfigError


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



def output_budget(cfg: ModelConfig, opts: GenerationOptions, lengths: Tensor, *, prefix_len: int, src_len: int,
                  table: int | None = None) -> Tensor:
    """New tokens each row may produce: ``max_len_a · length + max_len_b``, within the model's
    :meth:`~hybridformer.config.ModelConfig.output_cap` after the ``prefix_len`` tokens already fed
    (``table``: the rows of an exported position table)."""
    a, b = opts.length_budget(cfg.is_seq2seq)
    return max_lengths(lengths, a, b, cap=cfg.output_cap(prefix_len=prefix_len, src_len=src_len, table=table))


def refuse_penalties(opts: GenerationOptions) -> None:
    """The OpenAI penalties exist only where the server streams a language model on the torch engine."""
    if opts.presence_penalty or opts.frequency_penalty:
        raise ConfigError("presence_penalty and frequency_penalty apply to greedy search and sampling of a language "
                          "model on the torch engine (hybridformer serve's OpenAI routes)")
