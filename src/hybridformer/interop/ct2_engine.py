"""The ``ct2`` engine: decode with a CTranslate2 export under hybridformer's own text conventions.

:class:`Ct2Decoder` offers what the torch decoder offers generation — ``tokenizer``, ``config``
and ``decode_batch(sources, opts)`` from token ids to token ids — so ``generate``, ``evaluate`` and
``serve`` switch engines with one flag and keep their input handling and output format. Greedy
search gives the torch engine's tokens exactly (tests/interop/test_ct2.py); beam search and
sampling are CTranslate2's own (same options, its tie-breaking and random numbers).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer

from ..checkpoint import WEIGHTS, load_tokenizer
from ..config import ModelConfig, parse_config
from ..data.chat import ChatTemplate, load_chat_template
from ..decoding.logits import max_lengths
from ..errors import CheckpointError, ConfigError, DataError
from .ct2 import (
    CT2_CONFIG,
    QUANTIZATIONS,
    SINUSOID_ROWS,
    export_ct2,
    exported_config,
    is_ct2_export,
    require_ctranslate2,
)


@dataclass
class Ct2Decoder:
    """A CTranslate2 ``Translator`` (seq2seq) or ``Generator`` (LM) with its tokenizer and model config."""

    model: object
    tokenizer: Tokenizer
    config: ModelConfig
    name: str
    device: torch.device = torch.device("cpu")
    vocab: list[str] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)
    chat_template: ChatTemplate | None = None  # a converted instruct model's, for generate --chat and serve

    def tokens(self, ids: list[int]) -> list[str]:
        return [self.vocab[i] for i in ids]

    def budgets(self, sources: list[list[int]], opts) -> list[int]:
        """Each input's output budget: the torch engine's ``a · src_len + b``, within the position table."""
        cfg = self.config
        lengths = torch.tensor([len(s) - 1 if cfg.is_seq2seq else len(s) for s in sources])
        a, b = opts.length_budget(cfg.is_seq2seq)
        return max_lengths(lengths, a, b, cap=self._cap(sources)).tolist()

    def decode_batch(self, sources: list[list[int]], opts, generator: torch.Generator | None = None,
                     on_token: Callable[[int, int], bool | None] | None = None) -> list[list[int]]:
        """Token ids of one batch in (seq2seq sources end with EOS), output token ids out, without EOS.

        ``opts`` is a :class:`~hybridformer.generation.GenerationOptions`; output budgets are
        the torch engine's ``a · src_len + b`` per input. Language-model prompts may have different
        lengths (CTranslate2 feeds the common part at once and forces the rest). Under greedy search
        and sampling a per-token callback stops each row at its own budget (one call for all greedy
        rows, no steps wasted past a short row's budget), and ``on_token(row, id)`` sees every token
        as CTranslate2 generates it, EOS included (the caller filters: ``serve.ragged.RowEmitter``); when it
        answers True the row ends there (a stop string).
        """
        cfg = self.config
        if opts.sample and opts.seed is not None and generator is not None:
            require_ctranslate2().set_random_seed(int(torch.randint(2**31 - 1, (1,), generator=generator)))
        budgets = self.budgets(sources, opts)
        search = dict(beam_size=opts.beam_size, length_penalty=opts.lenpen, no_repeat_ngram_size=opts.no_repeat_ngram,
                      sampling_topk=(opts.top_k if opts.sample else 1), sampling_topp=opts.top_p,
                      sampling_temperature=opts.temperature,
                      # as the torch engine: padding is never output (a pad outside the vocabulary, GPT-2's, can't be)
                      suppress_sequences=[[self.vocab[cfg.pad_id]]] if cfg.pad_id < len(self.vocab) else None)
        if not opts.sample and opts.beam_size == 1:  # greedy is prefix-consistent: one call, then each budget
            groups = {max(budgets): list(range(len(sources)))}
        else:
            groups = defaultdict(list)
            for row, budget in enumerate(budgets):
                groups[budget].append(row)
        outputs: list[list[int]] = [[] for _ in sources]
        for budget, rows in groups.items():
            batch = [self.tokens(sources[r]) for r in rows]
            callback = None
            if opts.beam_size == 1:  # each row stops at its own budget: no steps wasted past it
                counts = [0] * len(rows)

                def callback(step, rows=rows, counts=counts) -> bool:
                    counts[step.batch_id] += 1
                    stop = on_token is not None and bool(on_token(rows[step.batch_id], step.token_id))
                    return stop or counts[step.batch_id] >= budgets[rows[step.batch_id]]
            for row, ids in zip(rows, self._run(batch, budget, search, callback), strict=True):
                outputs[row] = ids[: budgets[row]]
        return outputs

    def _run(self, batch: list[list[str]], budget: int, search: dict, callback=None) -> list[list[int]]:
        if self.config.is_seq2seq:
            results = self.model.translate_batch(batch, max_decoding_length=budget, min_decoding_length=0,
                                                 max_input_length=0, callback=callback, **search)
            return [[self.ids[t] for t in r.hypotheses[0]] for r in results]
        results = self.model.generate_batch(batch, max_length=budget, include_prompt_in_result=False,
                                            end_token=self.vocab[self.config.eos_id], callback=callback, **search)
        return [list(r.sequences_ids[0]) for r in results]

    def _cap(self, sources: list[list[int]]) -> int:
        """The torch engine's cap on new tokens (``max_positions``; learned positions: what is left of the
        table), and never past the end of the exported position table."""
        cfg = self.config
        prefix = 1 if cfg.is_seq2seq else max(len(s) for s in sources)
        longest = max(len(s) for s in sources)
        if cfg.position in ("rope", "alibi", "t5"):
            return cfg.max_positions
        rows = cfg.max_positions if cfg.position == "learned" else SINUSOID_ROWS
        if longest > rows or rows - prefix < 1:
            raise DataError(f"an input of {longest} tokens does not fit the {rows} positions of this model; "
                            "shorten the line")
        return rows - prefix if cfg.position == "learned" else min(cfg.max_positions, rows - prefix)

    def score(self, sources: list[list[int]], targets: list[list[int]] | None = None) -> list[list[float]]:
        """Teacher-forced log-probabilities: of ``targets + [EOS]`` given ``sources`` (seq2seq), or of
        ``sources[i][1:]`` (an LM scores its own text)."""
        if self.config.is_seq2seq:
            results = self.model.score_batch([self.tokens(s) for s in sources], [self.tokens(t) for t in targets])
        else:
            results = self.model.score_batch([self.tokens(s) for s in sources])
        return [list(r.log_probs) for r in results]


def load_ct2_decoder(path: str | Path, *, quantization: str | None = None, device: str = "cpu",
                     threads: int | None = None) -> Ct2Decoder:
    """Open a CTranslate2 export, or an ordinary checkpoint exported once into ``<path>.ct2-<quantization>``
    beside it (float32 unless ``quantization``; re-exported when the checkpoint's weights are newer)."""
    ct2 = require_ctranslate2()
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ConfigError(f"--quantization must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    path = Path(path)
    compute_type = "default"
    if is_ct2_export(path):
        export = path
        compute_type = quantization or "default"
    else:
        export = ct2_cache(path, quantization or "float32")
        weights = path / WEIGHTS
        stale = not is_ct2_export(export) or (
            weights.is_file() and weights.stat().st_mtime > (export / CT2_CONFIG).stat().st_mtime)
        if stale:
            export_ct2(path, export, quantization=quantization or "float32", overwrite=True)
    config = parse_config(ModelConfig, exported_config(export))
    tokenizer = load_tokenizer(export)
    if tokenizer is None:
        raise CheckpointError(f"{export}: no tokenizer.json beside the CTranslate2 model")
    engine = ct2.Translator if config.is_seq2seq else ct2.Generator
    threads = threads or torch.get_num_threads()
    model = engine(str(export), device=device, compute_type=compute_type, intra_threads=threads)
    vocab_file = "shared_vocabulary.json" if config.is_seq2seq else "vocabulary.json"
    vocab = json.loads((export / vocab_file).read_text())
    return Ct2Decoder(model, tokenizer, config, str(export), torch.device("cpu"), vocab,
                      {token: i for i, token in enumerate(vocab)}, load_chat_template(export))


def ct2_cache(checkpoint: Path, quantization: str) -> Path:
    """Where an ordinary checkpoint's CTranslate2 export is cached: a folder beside it."""
    return checkpoint.parent / f"{checkpoint.name}.ct2-{quantization}"
