"""The ``ct2`` engine: decode with a CTranslate2 export under hybridformer's own text conventions.

:class:`Ct2Engine` offers what the torch engine offers — ``tokenizer``, ``config``,
``decode_batch(sources, opts)`` from token ids to token ids, ``stream`` and ``nll`` — so ``generate``,
``evaluate`` and ``serve`` switch engines with one flag and keep their input handling and output format. Greedy
search gives the torch engine's tokens exactly (tests/interop/test_ct2.py); beam search and
sampling are CTranslate2's own (same options, its tie-breaking and random numbers).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer

from .. import structured
from ..checkpoint import Checkpoint
from ..config import ModelConfig, parse_config
from ..data.chat import ChatTemplate
from ..data.side_files import SideFiles
from ..data.text import token_batches
from ..decoding.greedy import strip_after_eos
from ..errors import CheckpointError, ConfigError
from ..filenames import CONFIG, CT2_WEIGHTS, WEIGHTS
from ..inference import CheckpointLike
from ..interop.ct2 import (
    QUANTIZATIONS,
    SINUSOID_ROWS,
    export_ct2,
    exported_config,
    is_ct2_export,
    require_ctranslate2,
)
from .options import GenerationOptions, output_budget, refuse_penalties
from .rows import Emit, ragged_ok, stream_rows

FORCED_SPREAD = 32  # prompt tokens CTranslate2 may force one step at a time in a batch (its longest - shortest)


@dataclass
class Ct2Engine:
    """A CTranslate2 ``Translator`` (seq2seq) or ``Generator`` (LM) with its tokenizer and model config."""

    model: object
    tokenizer: Tokenizer
    config: ModelConfig
    name: str
    device: torch.device = torch.device("cpu")
    vocab: list[str] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)
    chat_template: ChatTemplate | None = None  # a converted instruct model's, for generate --chat and serve
    # Prompt tokens a batch may force one step at a time; none under int8 compute types, where a forced tail
    # changes the longer prompt's answer (SmolLM2-135M chat prompts in pairs: 10 of 11 longer ones), never in float32
    forced_spread: int = FORCED_SPREAD
    joins = False  # CTranslate2 runs whole searches: rows cannot join one mid-flight

    @classmethod
    def load(cls, checkpoints: Sequence[CheckpointLike], device: str | torch.device = "cpu", *,
             purpose: str = "generate", weights: Sequence[float] | None = None, combine: str = "prob",
             quantization: str | None = None, adapter: str | Path | None = None, compile: bool = False) -> Ct2Engine:
        """One checkpoint (exported once into a cache beside it) or a CTranslate2 export, with ``quantization``."""
        from ..lora import is_adapter_only

        if compile:
            raise ConfigError("--compile compiles the torch engine's decoding step; CTranslate2 runs its own kernels")
        if adapter is not None or any(not isinstance(i, Checkpoint) and is_adapter_only(i) for i in checkpoints):
            raise ConfigError("--engine ct2 runs plain checkpoints; fold the LoRA adapter in first: "
                              "hybridformer merge --fold ADAPTER --out DIR")
        if len(checkpoints) != 1 or weights is not None:
            raise ConfigError(f"--engine ct2 runs one model; {purpose} an ensemble with --engine torch")
        item = checkpoints[0]
        path = item.path if isinstance(item, Checkpoint) else item
        return load_ct2_engine(path, quantization=quantization, device=torch.device(device).type)

    def tokens(self, ids: list[int]) -> list[str]:
        return [self.vocab[i] for i in ids]

    def budgets(self, sources: list[list[int]], opts) -> list[int]:
        """Each input's output budget: the torch engine's, and never past the end of the position table the
        export wrote (a sinusoid, or none: :data:`SINUSOID_ROWS` rows; learned positions: the model's own)."""
        cfg = self.config
        lengths = torch.tensor([len(s) - 1 if cfg.is_seq2seq else len(s) for s in sources])
        prefix = 1 if cfg.is_seq2seq else max(len(s) for s in sources)
        table = SINUSOID_ROWS if cfg.position in ("sinusoidal", "none") else None
        return output_budget(cfg, opts, lengths, prefix_len=prefix, src_len=max(len(s) for s in sources),
                             table=table).tolist()

    def decode_batch(self, sources: list[list[int]], opts, generator: torch.Generator | None = None,
                     on_token: Callable[[int, int], bool | None] | None = None) -> list[list[int]]:
        """Token ids of one batch in (seq2seq sources end with EOS), output token ids out, without EOS.

        ``opts`` is a :class:`~hybridformer.engines.options.GenerationOptions`; output budgets are
        the torch engine's ``a · src_len + b`` per input. Language-model prompts may have different
        lengths (CTranslate2 feeds the common part at once and forces the rest). Under greedy search
        and sampling a per-token callback stops each row at its own budget (one call for all greedy
        rows, no steps wasted past a short row's budget), and ``on_token(row, id)`` sees every token
        as CTranslate2 generates it, EOS included (the caller filters: ``engines.rows.RowEmitter``); when it
        answers True the row ends there (a stop string).
        """
        refuse_penalties(opts)
        cfg = self.config
        if opts.sample and opts.seed is not None and generator is not None:
            require_ctranslate2().set_random_seed(int(torch.randint(2**31 - 1, (1,), generator=generator)))
        budgets = self.budgets(sources, opts)
        search = dict(beam_size=opts.beam_size, length_penalty=opts.lenpen, no_repeat_ngram_size=opts.no_repeat_ngram,
                      sampling_topk=(opts.top_k if opts.sample else 1), sampling_topp=opts.top_p,
                      sampling_temperature=opts.temperature,
                      # as the torch engine: padding is never output (a pad outside the vocabulary, GPT-2's, can't be)
                      suppress_sequences=[[self.vocab[cfg.pad_id]]] if cfg.pad_in_vocab else None)
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
                                            end_token=[self.vocab[i] for i in self.config.eos_ids], callback=callback,
                                            **search)
        return [strip_after_eos(list(r.sequences_ids[0]), self.config.eos_ids) for r in results]

    def ragged(self, opts: GenerationOptions, sources: list[list[int]]) -> bool:
        """``generate`` batches LM prompts by length (CTranslate2 would force the longer prompts' tails)."""
        return False

    def stream(self, sources: list[list[int]], opts: GenerationOptions, generator: torch.Generator | None = None,
               emit: Emit | None = None) -> list[list[int]]:
        """Outputs per source, each token handed to ``emit(row, token)`` as CTranslate2 generates it (LM greedy
        search and sampling); LM prompts of different lengths share a batch (CTranslate2 forces their tails)."""
        return stream_rows(self, sources, opts, generator, emit, _groups(sources, opts, self.forced_spread))

    def nll(self, sources: list[list[int]], targets: list[list[int]] | None = None) -> tuple[float, int]:
        """Summed negative log-likelihood (nats) and tokens scored, as :meth:`score` defines them."""
        log_probs = self.score(sources, targets)
        return -sum(sum(row) for row in log_probs), sum(len(row) for row in log_probs)

    def score(self, sources: list[list[int]], targets: list[list[int]] | None = None) -> list[list[float]]:
        """Teacher-forced log-probabilities: of ``targets + [EOS]`` given ``sources`` (seq2seq), or of
        ``sources[i][1:]`` (an LM scores its own text)."""
        if self.config.is_seq2seq:
            results = self.model.score_batch([self.tokens(s) for s in sources], [self.tokens(t) for t in targets])
        else:
            results = self.model.score_batch([self.tokens(s) for s in sources])
        return [list(r.log_probs) for r in results]


def load_ct2_engine(path: str | Path, *, quantization: str | None = None, device: str = "cpu",
                    threads: int | None = None) -> Ct2Engine:
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
            weights.is_file() and weights.stat().st_mtime > (export / CONFIG).stat().st_mtime)
        if stale:  # said on stderr: the export is a model-sized directory the user did not name
            print(f"note: --engine ct2 exports {path} once into {export} (reused while the checkpoint is unchanged)",
                  file=sys.stderr, flush=True)
            export_ct2(path, export, quantization=quantization or "float32", overwrite=True)
    config = parse_config(ModelConfig, exported_config(export))
    side = SideFiles.read(export)
    if side.tokenizer is None:
        raise CheckpointError(f"{export}: no tokenizer.json beside the CTranslate2 model")
    engine = ct2.Translator if config.is_seq2seq else ct2.Generator
    threads = threads or torch.get_num_threads()
    try:
        model = engine(str(export), device=device, compute_type=compute_type, intra_threads=threads)
    except RuntimeError as exc:  # a truncated or corrupt model.bin
        raise CheckpointError(f"{export / CT2_WEIGHTS}: CTranslate2 cannot load it ({str(exc)[:200]}); "
                              "export the checkpoint again") from None
    vocab_file = "shared_vocabulary.json" if config.is_seq2seq else "vocabulary.json"
    vocab = structured.read(export / vocab_file, error=CheckpointError)
    return Ct2Engine(model, side.tokenizer, config, str(export), torch.device("cpu"), vocab,
                     {token: i for i, token in enumerate(vocab)}, side.chat_template,
                     0 if model.compute_type.startswith("int8") else FORCED_SPREAD)


def ct2_cache(checkpoint: Path, quantization: str) -> Path:
    """Where an ordinary checkpoint's CTranslate2 export is cached: a folder beside it."""
    return checkpoint.parent / f"{checkpoint.name}.ct2-{quantization}"


def _groups(sources: list[list[int]], opts: GenerationOptions, spread: int) -> list[list[int]]:
    """Batches for CTranslate2's Generator. Under greedy search LM prompts of different lengths share one: it feeds
    the shortest prompt's length at once and forces each longer prompt's rest one decoding step per token (never
    ending a row on a forced end token, so chat prompts, an end-of-turn after every turn, mix too). A forced step
    costs a whole batch step, so prompts sorted by length batch within ``spread`` tokens of the shortest
    (measured: docs/deployment.md). One-token prompts batch apart (CTranslate2 4.8 then returns the longer
    prompts' second token as if generated)."""
    lengths = [len(s) for s in sources]
    if not ragged_ok(opts):
        return list(token_batches(lengths, opts.batch_tokens, same_length=True))
    groups = []
    for part in ([i for i, n in enumerate(lengths) if n == 1], [i for i, n in enumerate(lengths) if n > 1]):
        for batch in token_batches([lengths[i] for i in part], opts.batch_tokens):  # each sorted by length
            group: list[int] = []
            for row in (part[j] for j in batch):
                if group and lengths[row] - lengths[group[0]] > spread:
                    groups.append(group)
                    group = []
                group.append(row)
            groups.append(group)
    return groups
