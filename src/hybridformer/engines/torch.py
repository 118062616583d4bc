"""The ``torch`` engine: hybridformer's own models and searches, for every architecture it builds.

It decodes through a :class:`~hybridformer.decoding.Scorer` (one model, or an ensemble of them), so
greedy, beam and sampling never know which model runs; and it scores text under teacher forcing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import Tensor

from ..config import ModelConfig
from ..data.chat import ChatTemplate
from ..data.text import pad, target_ids, token_batches
from ..decoding import ModelScorer, Scorer, beam_search, greedy_search, sample_search
from ..decoding.ensemble import Combine
from ..errors import CheckpointError, ConfigError
from ..inference import Checkpoint, CheckpointLike, Task, load_checkpoints, scorer_from_checkpoints
from ..metrics import token_nll
from .options import GenerationOptions, output_budget, refuse_penalties
from .ragged import RaggedPrompts
from .rows import Emit, RowEmitter, ragged_ok, stream_rows


@dataclass
class TorchEngine:
    """What generation needs from the checkpoint(s): a Scorer, the tokenizer and the config."""

    scorer: Scorer
    tokenizer: Tokenizer
    config: ModelConfig
    device: torch.device
    name: str  # the checkpoint path(s), for messages
    chat_template: ChatTemplate | None = None  # the first checkpoint's (instruct models), for generate --chat

    @classmethod
    def load(cls, checkpoints: Sequence[CheckpointLike], device: str | torch.device = "cpu", *,
             purpose: Task = "generate", weights: Sequence[float] | None = None, combine: Combine = "prob",
             quantization: str | None = None, adapter: str | Path | None = None, compile: bool = False) -> TorchEngine:
        """Several checkpoints become one :class:`~hybridformer.decoding.Ensemble` Scorer (same vocabulary,
        any architectures), combined per step by ``combine`` (``prob`` or ``log_prob``) with ``weights``;
        ``adapter`` is a LoRA adapter folded into the one checkpoint; ``compile``: each model's one-token steps
        run through ``torch.compile`` (:class:`~hybridformer.decoding.compiled.CompiledDecode`)."""
        if quantization is not None:
            raise ConfigError("--quantization applies to --engine ct2; for the torch engine run `hybridformer "
                              "quantize` once and use its output")
        from ..interop.ct2 import is_ct2_export

        for item in checkpoints:
            if not isinstance(item, Checkpoint) and is_ct2_export(item):
                raise CheckpointError(f"{item} is a CTranslate2 export; run it with --engine ct2")
        from ..lora import with_adapter

        ckpts = load_checkpoints(with_adapter(list(checkpoints), adapter, device), device, task=purpose)
        scorer = scorer_from_checkpoints(ckpts, weights=weights, combine=combine, compile=compile)
        name = ", ".join(str(c.path) for c in ckpts)
        return cls(scorer, ckpts[0].tokenizer, ckpts[0].config, torch.device(device), name,
                   ckpts[0].chat_template)

    def ragged(self, opts: GenerationOptions, sources: list[list[int]]) -> bool:
        """Whether LM prompts of different lengths may share a batch: greedy search without n-gram blocking, on
        a model whose every mixer takes left padding (:meth:`prefill`). Sampling keeps equal-length batches, so
        a seeded sample draws the same random numbers however requests are grouped."""
        return self.scorer.left_padding and ragged_ok(opts) and not self.config.is_seq2seq

    @property
    def joins(self) -> bool:
        """Whether rows may join a running batch (:meth:`join`, continuous batching): a language model whose
        every mixer takes left padding; every decoding state then shifts its columns and appends rows."""
        return self.scorer.left_padding and not self.config.is_seq2seq

    def prefill(self, rows: list[list[int]]) -> tuple[Tensor, Any]:
        """LM prompts of any lengths -> next-token log-probs (rows, vocab) and the running state for :meth:`step`.

        The prompts are left-padded to one length and fed together (long ones in chunks through the cache),
        with masks, so each row's log-probs are those of its prompt alone; only the last position of each
        prompt is projected onto the vocabulary."""
        *_, last = self.prefill_chunks(rows, max(map(len, rows)))
        return last

    def prefill_chunks(self, rows: list[list[int]], columns: int) -> Iterator[tuple[Tensor, Any]]:
        """:meth:`prefill` fed ``columns`` columns at a time, one chunk per ``next()`` (chunked prefill, Agrawal et
        al., 2024, Sarathi: a running batch decodes between two chunks, so a long prompt never stalls it for long).
        Yields ``(log_probs, state)`` after each chunk; the last chunk's log-probs are the next token's."""
        prompts, start = self._left_pad(rows)
        if start is None and self.joins:  # every row starts at column 0: said, so that the rows can join others
            start = torch.zeros(len(rows), dtype=torch.long, device=self.device)
        state = self.scorer.init_state(None, start)
        for at in range(0, prompts.shape[1], columns):
            log_probs, state = self.scorer.step(state, prompts[:, at : at + columns])
            yield log_probs, state

    def join(self, state: Any, other: Any) -> Any:
        """The running batch ``state`` with the rows of ``other`` (from :meth:`prefill`) appended after its own:
        the next :meth:`step` takes one token for each. Each row still decodes exactly as alone."""
        return self.scorer.join(state, other)

    def step(self, state: Any, tokens: Tensor) -> tuple[Tensor, Any]:
        """tokens: (rows,) one new token per row -> next-token log-probs (rows, vocab) and the state."""
        return self.scorer.step(state, tokens[:, None])

    def keep(self, state: Any, index: Tensor) -> Any:
        """Keep rows ``index`` of a running batch (finished rows leave), in that order."""
        return self.scorer.reorder(state, index)

    def _left_pad(self, rows: list[list[int]]) -> tuple[Tensor, Tensor | None]:
        """(rows, longest) prompts padded on the left, and each row's first column (None: one length)."""
        longest = max(len(r) for r in rows)
        if all(len(r) == longest for r in rows):
            return torch.tensor(rows, dtype=torch.long, device=self.device), None
        if not self.scorer.left_padding:
            raise ConfigError(f"{self.name}: this model's attention places keys by column (sinks or BigBird "
                              "blocks), so it decodes LM prompts of one length per batch")
        prompts = torch.full((len(rows), longest), self.config.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            prompts[i, longest - len(r):] = torch.tensor(r, dtype=torch.long)
        start = torch.tensor([longest - len(r) for r in rows], device=self.device)
        return prompts.to(self.device), start

    def decode_batch(self, sources: list[list[int]], opts: GenerationOptions,
                     generator: torch.Generator | None = None) -> list[list[int]]:
        """Token ids of one batch in, output token ids out. LM prompts may differ in length where :meth:`ragged`
        allows (one left-padded prefill)."""
        refuse_penalties(opts)
        cfg, scorer = self.config, self.scorer
        if cfg.is_seq2seq:
            src = pad(sources, cfg.pad_id, self.device)
            state = scorer.init_state(src)
            prefix = torch.full((len(sources), 1), cfg.start_id, dtype=torch.long, device=self.device)
            lengths = src.ne(cfg.pad_id).sum(1) - 1  # source tokens, EOS not counted
            budget = output_budget(cfg, opts, lengths, prefix_len=1, src_len=src.shape[1])
        else:
            prefix, start = self._left_pad(sources)
            state, budget = scorer.init_state(None, start), torch.tensor(self.budgets(sources, opts))
        budget = budget.to(self.device)
        common = {"eos_id": cfg.eos_ids, "no_repeat_ngram": opts.no_repeat_ngram}
        if opts.beam_size != 1 and not opts.sample:
            hyps = beam_search(scorer, state, prefix, beam=opts.beam_size, max_len=budget, lenpen=opts.lenpen,
                               early_stopping=opts.early_stopping, at_budget=opts.at_budget, **common)
            return [h.tokens for h in hyps]
        if opts.sample:
            return sample_search(scorer, state, prefix, max_new_tokens=budget, temperature=opts.temperature,
                                 top_k=opts.top_k, top_p=opts.top_p, generator=generator, **common)
        return greedy_search(scorer, state, prefix, max_new_tokens=budget, **common)

    def stream(self, sources: list[list[int]], opts: GenerationOptions, generator: torch.Generator | None = None,
               emit: Emit | None = None) -> list[list[int]]:
        """Outputs as :meth:`decode_batch` gives them, each token also handed to ``emit(row, token, log_probs)`` as
        soon as it is chosen (LM greedy search and sampling, where ``emit`` may stop a row and the OpenAI
        penalties apply; otherwise when its batch is done). Greedy batches mix prompt lengths; sampling keeps
        ``generate``'s equal-length groups, so a seeded sample draws the same random numbers as there."""
        cfg = self.config
        if cfg.is_seq2seq or opts.beam_size != 1:
            return stream_rows(self, sources, opts, generator, emit, [])
        lengths = [len(s) for s in sources]
        groups = token_batches(lengths, opts.batch_tokens, same_length=not ragged_ok(opts))
        outputs: dict[int, list[int]] = {}
        for rows in groups:
            batch = [sources[r] for r in rows]
            emitter = RowEmitter(emit, self.budgets(batch, opts), cfg.eos_ids, rows)
            if self.scorer.left_padding:  # one padded prefill
                (prefix, start), tails = self._left_pad(batch), [[] for _ in batch]
            else:  # the part all prompts share at once, then each longer prompt's tail forced
                common = min(len(s) for s in batch)
                prefix = torch.tensor([s[:common] for s in batch], dtype=torch.long, device=self.device)
                start, tails = None, [s[common:] for s in batch]
            ragged = RaggedPrompts(self.scorer, tails, emitter, start=start, presence=opts.presence_penalty,
                                   frequency=opts.frequency_penalty)
            budget = torch.tensor([len(t) + b for t, b in zip(tails, emitter.budgets, strict=True)], device=self.device)
            forced = torch.tensor([len(t) for t in tails], device=self.device)  # an EOS there is prompt, not an end
            common_args = {"eos_id": cfg.eos_ids, "max_new_tokens": budget, "no_repeat_ngram": opts.no_repeat_ngram,
                           "forced": forced}
            if opts.sample:
                found = sample_search(ragged, ragged.init_state(None), prefix, temperature=opts.temperature,
                                      top_k=opts.top_k, top_p=opts.top_p, generator=generator, **common_args)
            else:
                found = greedy_search(ragged, ragged.init_state(None), prefix, **common_args)
            outputs.update(zip(rows, ragged.finish(found), strict=True))
        return [outputs[i] for i in range(len(sources))]

    def budgets(self, sources: list[list[int]], opts: GenerationOptions) -> list[int]:
        """Each LM prompt's output budget, as for the prompt alone."""
        return [int(output_budget(self.config, opts, torch.tensor([len(s)]), prefix_len=len(s), src_len=len(s)))
                for s in sources]

    def nll(self, sources: list[list[int]], targets: list[list[int]] | None = None) -> tuple[float, int]:
        """Teacher forcing: summed negative log-likelihood (nats) and the number of tokens scored — of
        ``targets[i] + [EOS]`` given ``sources[i]`` (seq2seq), or of ``sources[i][1:]`` (an LM scores its text)."""
        if not isinstance(self.scorer, ModelScorer):
            raise ConfigError("ppl scores one model under teacher forcing; evaluate each checkpoint on its own "
                              "(ensembles are scored with bleu, chrf or rouge)")
        cfg, model = self.config, self.scorer.model
        if targets is None:
            inputs, labels, src = [s[:-1] for s in sources], [s[1:] for s in sources], None
        else:
            pairs = [target_ids(t, cfg.start_id, cfg.eos_id) for t in targets]
            inputs, labels = [p[0] for p in pairs], [p[1] for p in pairs]
            src = pad(sources, cfg.pad_id, self.device)
        nll = token_nll(model, pad(inputs, cfg.pad_id, self.device), pad(labels, -100, self.device), -100, src=src)
        return nll, sum(len(row) for row in labels)
