"""Long-context recall of a language model: pass-key and multi-key needle retrieval by length and depth.

Perplexity rewards local fluency; a reader of long documents needs recall. The pass-key test
(Mohtashami & Jaggi, 2023) hides a five-digit key in filler text and asks for it at the end; the
multi-key variant (RULER's MK-NIAH, Hsieh et al., 2024) hides several keys under different names and
asks for one, so the model must also tell them apart. The filler is made of generated sentences
without digits ("The river is quiet."), so nothing is downloaded and the only numbers in a prompt are
the keys. Every prompt follows from (task, length, depth, sample, seed): the same arguments build the
same prompts on every machine. Decoding is greedy; an answer counts when the first number in the
output is the key.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from ..data.text import encode_checked
from ..engines import GenerationOptions, decode_sources, load_engine
from ..errors import ConfigError, DataError
from .attention import status_kb
from .table import markdown_table

TASKS = ("passkey", "multikey")
HEADER = ("There is an important piece of information hidden inside a lot of irrelevant text. "
          "Find it and memorize it. I will quiz you about it.\n")
NOUNS = ("grass", "sky", "sun", "river", "road", "garden", "mountain", "house", "forest", "lake", "city", "field",
         "wind", "morning", "evening", "bridge", "market", "window", "garden path", "harbour")
ADJECTIVES = ("green", "blue", "yellow", "quiet", "long", "warm", "old", "bright", "calm", "wide", "busy", "cold",
              "soft", "still", "open", "grey", "pleasant", "narrow", "gentle", "clear")
NAMES = ("red", "blue", "green", "yellow", "purple", "orange", "silver", "golden", "white", "black")
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class RecallPrompt:
    """One test item: the prompt text, the key it must answer with, and where the key lies (0 = start)."""

    text: str
    answer: str
    depth: float


def filler(rng: random.Random, sentences: int) -> list[str]:
    """``sentences`` generated sentences without digits, e.g. ``The river is quiet.``"""
    return [f"The {rng.choice(NOUNS)} is {rng.choice(ADJECTIVES)}." for _ in range(sentences)]


def build_prompt(tokenizer: Tokenizer, task: str, length: int, depth: float, *, sample: int = 0, seed: int = 0,
                 keys: int = 4) -> RecallPrompt:
    """A prompt of about ``length`` tokens (filler cut at a sentence end) with the asked key at ``depth``
    of the filler (0 = right after the header, 1 = right before the question); ``multikey`` hides
    ``keys`` keys under different names at random depths besides the asked one."""
    if task not in TASKS:
        raise ConfigError(f"recall task {task!r} unknown; choose from: {', '.join(TASKS)}")
    if not 0.0 <= depth <= 1.0:
        raise ConfigError(f"recall depth must be in [0, 1], got {depth}")
    if task == "multikey" and not 2 <= keys <= len(NAMES):
        raise ConfigError(f"--keys must be in [2, {len(NAMES)}] for multikey, got {keys}")
    rng = random.Random(f"{seed}/{task}/{length}/{depth}/{sample}")
    values = [str(rng.randrange(10_000, 100_000)) for _ in range(keys if task == "multikey" else 1)]
    if task == "passkey":
        needles = [f" The pass key is {values[0]}. Remember it. {values[0]} is the pass key."]
        question = "\nWhat is the pass key? The pass key is"
    else:
        names = rng.sample(NAMES, keys)
        needles = [f" The pass key of the {name} door is {value}." for name, value in zip(names, values, strict=True)]
        question = f"\nWhat is the pass key of the {names[0]} door? The pass key of the {names[0]} door is"
    fixed = len(tokenizer.encode(HEADER + "".join(needles) + question, add_special_tokens=False).ids)
    sentences = _fit(tokenizer, rng, length - fixed)
    depths = [depth] + [rng.random() for _ in needles[1:]]
    inserts = sorted(((round(d * len(sentences)), i) for i, d in enumerate(depths)), reverse=True)
    body = [" " + s for s in sentences]
    for position, index in inserts:
        body.insert(position, needles[index])
    return RecallPrompt(HEADER + "".join(body).lstrip() + question, values[0], depth)


def _fit(tokenizer: Tokenizer, rng: random.Random, budget: int) -> list[str]:
    """Filler sentences whose tokens fill ``budget`` without passing it (at least one sentence)."""
    sentences = filler(rng, max(1, budget // 4))  # no sentence is shorter than 4 tokens in any sane BPE
    encoding = tokenizer.encode(" ".join(sentences), add_special_tokens=False)
    if len(encoding.ids) <= budget:
        return sentences
    end = encoding.offsets[max(budget, 1) - 1][1]  # characters covered by the first `budget` tokens
    kept, used = [], 0
    for sentence in sentences:
        used += len(sentence) + (1 if kept else 0)
        if used > end and kept:
            break
        kept.append(sentence)
    return kept


def score_answer(output: str, answer: str) -> bool:
    """True when the first number in ``output`` is ``answer`` (``" 71432."`` and ``" is 71432"`` are right,
    ``" 7143"`` and ``" 12, no: 71432"`` are not)."""
    found = _NUMBER.search(output)
    return found is not None and found.group() == answer


@contextmanager
def peak_memory(device: torch.device):
    """Yields a dict whose ``mib`` is, on exit, the peak memory the block added (CUDA: allocated; CPU: the
    process's resident set, its high-water mark reset first through ``/proc/self/clear_refs``)."""
    result: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        yield result
        result["mib"] = (torch.cuda.max_memory_allocated(device) - before) / 2**20
        return
    before = status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    yield result
    result["mib"] = max(status_kb("VmHWM") - before, 0) / 1024


def run_recall(checkpoint: str | Path, *, tasks: Sequence[str] = ("passkey",), lengths: Sequence[int] = (2048, 4096),
               depths: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0), samples: int = 3, keys: int = 4,
               max_new_tokens: int = 8, seed: int = 0, device: str = "cpu",
               progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Accuracy, median seconds per prompt (prefill + greedy answer) and peak memory for every
    task × length × depth cell of ``samples`` prompts; a length the model does not take is a skipped cell."""
    if samples < 1 or max_new_tokens < 1 or not lengths or not depths or min(lengths) < 64:
        raise ConfigError("bench recall needs --samples >= 1, --max-new-tokens >= 1 and lengths >= 64")
    unknown = [t for t in tasks if t not in TASKS] or [d for d in depths if not 0.0 <= d <= 1.0]
    if unknown or not tasks:
        raise ConfigError(f"bench recall: {unknown[0] if unknown else 'no task'!r} is not a task "
                          f"({', '.join(TASKS)}) or a depth in [0, 1]")
    decoder = load_engine(checkpoint, device)
    if decoder.config.is_seq2seq:
        raise ConfigError(f"{checkpoint} is an encoder_decoder; bench recall prompts a decoder_lm")
    opts = GenerationOptions(beam=1, max_len_a=0.0, max_len_b=max_new_tokens)
    warm_up = build_prompt(decoder.tokenizer, "passkey", 64, 0.5, seed=seed)  # one-time allocations, thread pools
    decode_sources(decoder, [encode_checked(decoder.tokenizer, warm_up.text, decoder.config, 0)], opts)
    cells = []
    for task in tasks:
        for length in lengths:
            for depth in depths:
                cells.append(_cell(decoder, opts, task, length, depth, samples=samples, keys=keys, seed=seed))
                if progress is not None:
                    progress(cells[-1])
    return {"checkpoint": str(checkpoint), "tasks": list(tasks), "lengths": list(lengths), "depths": list(depths),
            "samples": samples, "keys": keys, "max_new_tokens": max_new_tokens, "seed": seed, "device": device,
            "threads": torch.get_num_threads(), "torch": torch.__version__, "cells": cells}


def _cell(decoder, opts: GenerationOptions, task: str, length: int, depth: float, *, samples: int, keys: int,
          seed: int) -> dict[str, Any]:
    cell: dict[str, Any] = {"task": task, "length": length, "depth": depth, "status": "ok"}
    seconds, cpu_seconds, peaks, tokens, outputs, correct = [], [], [], [], [], 0
    for sample in range(samples):
        prompt = build_prompt(decoder.tokenizer, task, length, depth, sample=sample, seed=seed, keys=keys)
        try:
            ids = encode_checked(decoder.tokenizer, prompt.text, decoder.config, sample + 1)
        except DataError as exc:
            return cell | {"status": "too long", "error": str(exc)}
        start, cpu_start = time.perf_counter(), time.process_time()
        with torch.inference_mode(), peak_memory(decoder.device) as peak:
            output = decoder.tokenizer.decode(decode_sources(decoder, [ids], opts)[0])
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)  # all threads; steadier than wall time on a busy machine
        peaks.append(peak["mib"])
        tokens.append(len(ids))
        outputs.append({"answer": prompt.answer, "output": output})
        correct += score_answer(output, prompt.answer)
    return cell | {"correct": correct, "total": samples, "accuracy": correct / samples,
                   "prompt_tokens": round(statistics.mean(tokens)), "median_s": statistics.median(seconds),
                   "median_cpu_s": statistics.median(cpu_seconds),
                   "peak_mib": max(peaks), "outputs": outputs}


def recall_markdown(result: dict[str, Any]) -> str:
    """Per task: accuracy by depth (rows) and length (columns), then median seconds and peak MiB per length."""
    lines = [f"`{result['checkpoint']}`: {result['samples']} prompt(s) per cell, greedy, "
             f"{result['threads']} thread(s) on {result['device']}"]
    for task in result["tasks"]:
        cells = [c for c in result["cells"] if c["task"] == task]
        rows = [[f"{depth:g}", *(f"{c['correct']}/{c['total']}" if c["status"] == "ok" else c["status"]
                                 for c in (_cell_at(cells, n, depth) for n in result["lengths"]))]
                for depth in result["depths"]]
        rows.append(["**all**", *(_summary(cells, n) for n in result["lengths"])])
        lines += ["", f"**{task}**" + (f" ({result['keys']} keys)" if task == "multikey" else ""), "",
                  markdown_table(["depth", *(f"{n:,}" for n in result["lengths"])], rows,
                                 align="l" + "r" * len(result["lengths"]))]
    return "\n".join(lines) + "\n"


def _cell_at(cells: list[dict[str, Any]], length: int, depth: float) -> dict[str, Any]:
    return next(c for c in cells if c["length"] == length and c["depth"] == depth)


def _summary(cells: list[dict[str, Any]], length: int) -> str:
    done = [c for c in cells if c["length"] == length and c["status"] == "ok"]
    if not done:
        return "—"
    accuracy = sum(c["correct"] for c in done) / sum(c["total"] for c in done)
    seconds = statistics.median(c["median_s"] for c in done)
    return f"{100 * accuracy:.0f}% · {seconds:.1f} s · {max(c['peak_mib'] for c in done):.0f} MiB"


def write_recall(result: dict[str, Any], paths: dict[str, Path]) -> None:
    """``paths['json']``, ``paths['markdown']`` and the accuracy heatmap ``paths['plot']``."""
    from .plots import plot_recall

    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    paths["json"].write_text(json.dumps(result, indent=2) + "\n")
    paths["markdown"].write_text(recall_markdown(result))
    plot_recall(result, paths["plot"])


def recall_paths(out: Path) -> dict[str, Path]:
    return {"json": out / "recall.json", "markdown": out / "recall.md", "plot": out / "recall.png"}

