"""The contenders of ``bench decode``: our torch engine in each weight format, our ct2 engine, and the
peers a user would run the same weights with (``transformers``, CTranslate2, llama.cpp).

Every contender is a :class:`Runner`: ``greedy(prompts, n)`` and ``beam(prompts, n, k)`` return exactly
``n`` new token ids per prompt (EOS is suppressed, so no contender ends a benchmark early). A contender
is named by a picklable :class:`Spec`, so the peak-memory probe can build it again in a fresh process.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint
from ..compress import quantize_model
from ..compress.data import text_batches
from ..decoding import ModelScorer, beam_search, greedy_search
from ..errors import ConfigError
from ..quantized import quiet_torchao
from .peers import NoEarlyEnd

Prompts = list[list[int]]
FORMATS = ("fp32", "bf16", "int8", "int8-weight", "int4")
PEERS = ("transformers", "ct2", "llama.cpp")
ENGINES = ("torch", "ct2")


@dataclass(frozen=True)
class Spec:
    """One contender: ``kind`` (torch, ct2-engine, transformers, ct2, llama.cpp), its weight format, and for the
    torch engine whether its decoding step is compiled."""

    kind: str
    fmt: str
    compiled: bool = False

    @property
    def name(self) -> str:
        name = {"torch": "hybridformer torch", "ct2-engine": "hybridformer --engine ct2", "transformers":
                "transformers", "ct2": "CTranslate2 direct", "llama.cpp": "llama.cpp"}[self.kind] + f" {self.fmt}"
        return name + " compiled" if self.compiled else name

    @property
    def exact(self) -> bool:
        """An fp32 path: its greedy tokens must equal the torch fp32 engine's."""
        return self.fmt in ("fp32", "float32", "F32")


@dataclass
class Runner:
    greedy: Callable[[Prompts, int], Prompts]
    beam: Callable[[Prompts, int, int], Prompts] | None = None
    batched: bool = True  # False: rows run one after another (llama-cpp-python has no batch API)


@dataclass(frozen=True)
class Setup:
    """What every contender is built from: the checkpoint, a scratch folder for exports, the thread count,
    and the text that int8 is calibrated on (SmoothQuant), if any."""

    checkpoint: Path
    workdir: Path
    threads: int
    calibrate: Path | None = None


def contenders(engines: list[str], formats: list[str], peers: list[str], compiled: bool = False) -> list[Spec]:
    """The specs to run, in a fixed order (the reference, torch fp32, first when it is asked for); ``compiled``
    adds each torch format again with its compiled decoding step."""
    for option, given, known in (("--engines", engines, ENGINES), ("--formats", formats, FORMATS),
                                 ("--peers", peers, PEERS)):
        unknown = [name for name in given if name not in known]
        if unknown:
            raise ConfigError(f"{option}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    specs = [Spec("torch", fmt) for fmt in FORMATS if "torch" in engines and fmt in formats]
    specs += [Spec("torch", spec.fmt, compiled=True) for spec in specs if compiled]
    specs += [Spec("ct2-engine", q) for q in ("float32", "int8") if "ct2" in engines]
    specs += [Spec("transformers", "fp32")] if "transformers" in peers else []
    specs += [Spec("ct2", q) for q in ("float32", "int8") if "ct2" in peers]
    specs += [Spec("llama.cpp", q) for q in ("F32", "Q8_0") if "llama.cpp" in peers]
    return specs


def build(spec: Spec, setup: Setup) -> Runner:
    """The runner of ``spec``; a missing library or a model the peer cannot run raises ``Skip``."""
    with quiet_torchao():  # transformers imports torchao too
        if spec.kind == "torch":
            return _torch(spec.fmt, setup, spec.compiled)
        return {"ct2-engine": _ct2_engine, "transformers": _transformers, "ct2": _ct2,
                "llama.cpp": _llama_cpp}[spec.kind](spec.fmt, setup)


class Skip(Exception):
    """This contender cannot run here (library not installed, architecture not exportable): reported, not fatal."""


def _require(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise Skip(f"{package} is not installed")


# ----------------------------------------------------------------------------- hybridformer


def _torch(fmt: str, setup: Setup, compiled: bool = False) -> Runner:
    ckpt = load_checkpoint(setup.checkpoint)
    model, cfg = ckpt.model, ckpt.config
    if cfg.quantization is not None:
        raise Skip(f"the checkpoint is already quantized ({cfg.quantization}); bench its float source")
    if fmt != "fp32":
        calibration = None
        if fmt == "int8" and setup.calibrate is not None:
            calibration = text_batches(ckpt.tokenizer, cfg, [setup.calibrate], batch_size=8, purpose="calibration")
        model, cfg = quantize_model(copy.deepcopy(model), cfg, fmt, calibration=calibration)
    scorer = NoEarlyEnd(ModelScorer(model, compile=compiled), cfg.eos_ids)

    def start(prompts: Prompts):
        tokens = torch.tensor(prompts)
        if cfg.is_seq2seq:
            return scorer.init_state(tokens), torch.full((len(prompts), 1), cfg.start_id)
        return scorer.init_state(None), tokens

    def greedy(prompts: Prompts, n: int) -> Prompts:
        return greedy_search(scorer, *start(prompts), eos_id=cfg.eos_id, max_new_tokens=n)

    def beam(prompts: Prompts, n: int, k: int) -> Prompts:
        hyps = beam_search(scorer, *start(prompts), beam=k, eos_id=cfg.eos_id, max_len=n, at_budget="stop")
        return [h.tokens for h in hyps]

    return Runner(greedy, beam)


def _ct2_decoder(quantization: str, setup: Setup):
    """Our CTranslate2 export of the checkpoint (made once in the work folder) opened with ``quantization``."""
    _require("ctranslate2", "ctranslate2")
    from ..engines import load_engine
    from ..interop.ct2 import ct2_blockers, export_ct2

    export = setup.workdir / "ct2-float32"
    if not export.exists():
        ckpt = load_checkpoint(setup.checkpoint)
        problems = ct2_blockers(ckpt)
        if problems:
            raise Skip(f"CTranslate2 cannot run this model: {'; '.join(problems)}")
        export_ct2(ckpt, export)
    return load_engine(export, engine="ct2", quantization=quantization)  # threads: torch's, set to setup.threads


def _ct2_engine(quantization: str, setup: Setup) -> Runner:
    """``--engine ct2``: our wrapper's own search (no EOS suppression there: it counts the tokens it made)."""
    from ..engines import GenerationOptions

    decoder = _ct2_decoder(quantization, setup)

    def search(prompts: Prompts, n: int, k: int = 1) -> Prompts:
        return decoder.decode_batch(prompts, GenerationOptions(beam=k, max_len_a=0, max_len_b=n))

    return Runner(search, search)


def _ct2(quantization: str, setup: Setup) -> Runner:
    """CTranslate2 called directly on our export, as its documentation shows."""
    decoder = _ct2_decoder(quantization, setup)
    model, cfg, vocab = decoder.model, decoder.config, decoder.vocab

    def search(prompts: Prompts, n: int, k: int = 1) -> Prompts:
        batch = [decoder.tokens(p) for p in prompts]
        if cfg.is_seq2seq:
            results = model.translate_batch(batch, beam_size=k, max_decoding_length=n, min_decoding_length=n)
            return [[decoder.ids[t] for t in r.hypotheses[0]] for r in results]
        results = model.generate_batch(batch, beam_size=k, max_length=n, min_length=n,
                                       include_prompt_in_result=False, end_token=[vocab[i] for i in cfg.eos_ids])
        return [list(r.sequences_ids[0]) for r in results]

    return Runner(search, search)


# ----------------------------------------------------------------------------- transformers


def _transformers(fmt: str, setup: Setup) -> Runner:
    _require("transformers", "transformers")
    from ..interop.export import export_hf

    folder = setup.workdir / "hf"
    if not folder.exists():
        try:
            export_hf(setup.checkpoint, folder)
        except ConfigError as exc:
            raise Skip(str(exc)) from None
    import transformers

    transformers.utils.logging.disable_progress_bar()
    cfg = load_checkpoint(setup.checkpoint).config
    auto = transformers.AutoModelForSeq2SeqLM if cfg.is_seq2seq else transformers.AutoModelForCausalLM
    model = auto.from_pretrained(folder, dtype=torch.float32).eval()

    @torch.no_grad()
    def search(prompts: Prompts, n: int, k: int = 1) -> Prompts:
        tokens = torch.tensor(prompts)
        beams = dict(num_beams=k, early_stopping=True, length_penalty=1.0) if k > 1 else {}
        out = model.generate(input_ids=tokens, attention_mask=torch.ones_like(tokens), do_sample=False,
                             max_new_tokens=n, min_new_tokens=n, **beams)
        return out[:, 1:].tolist() if cfg.is_seq2seq else out[:, tokens.shape[1]:].tolist()

    return Runner(search, search)


# ----------------------------------------------------------------------------- llama.cpp


def _llama_cpp(quantization: str, setup: Setup) -> Runner:
    """llama.cpp through ``llama-cpp-python`` on our GGUF export (optional: never a test dependency)."""
    _require("llama_cpp", "llama-cpp-python")
    from ..interop.gguf_export import export_gguf

    file = setup.workdir / f"model-{quantization}.gguf"
    if not file.exists():
        try:
            export_gguf(setup.checkpoint, file, quantization=quantization.lower())
        except ConfigError as exc:
            raise Skip(str(exc)) from None
    import llama_cpp

    eos = load_checkpoint(setup.checkpoint).config.eos_ids
    llm = llama_cpp.Llama(str(file), n_ctx=4096, n_threads=setup.threads, n_threads_batch=setup.threads,
                          n_batch=512, verbose=False)

    def one(prompt: list[int], n: int) -> list[int]:
        llm.reset()
        out: list[int] = []
        # EOS suppressed as for every contender; top_k=1 is greedy
        for token in llm.generate(prompt, top_k=1, temp=0.0, reset=True, logits_processor=_no_token(eos)):
            out.append(token)
            if len(out) == n:
                break
        return out

    return Runner(lambda prompts, n: [one(p, n) for p in prompts], None, batched=False)


def _no_token(tokens: list[int]):
    import numpy as np

    def processor(input_ids, scores):
        scores[tokens] = -np.inf
        return scores

    return [processor]
