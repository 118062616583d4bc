"""Long context for a pretrained LM: perplexity by position, forward cost and decoding cost, per longify variant.

Steps (docs/RESULTS.md, section "`longify` on SmolLM2-135M", has the exact commands):

  text    tokenize QMSum meeting transcripts into one token stream; record documents and token counts
  stream  one variant (the original, or a longified copy made in memory with the same code as
          ``hybridformer longify``) reads the stream chunk by chunk through its decoding cache: per-token
          NLL, and the time and peak memory of the forward when it reaches 8k / 16k / 32k tokens.
          The chunked pass is exact (tests/test_longify.py: cache decoding equals the full forward), and
          partial results are written after every chunk, so a run stopped by its time limit still counts.
  decode  per-token decoding time and cache memory at given context lengths; the cache is filled with
          random keys/values of the real shape (step time and memory do not depend on their values)
  report  markdown tables of every result file in a directory
  publish copy the result files of a directory without the per-token NLL (perplexity per 1,024 tokens instead)

Run with ``MALLOC_MMAP_THRESHOLD_=65536`` (set here by re-executing) so the resident set tracks live memory.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tarfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from hybridformer import load_checkpoint
from hybridformer.attention import MultiHeadAttention
from hybridformer.cache import DecodingCache, KVCache, RollingKVCache
from hybridformer.longify import LongifyPlan, longify_checkpoint, parse_attention_spec

VARIANTS: dict[str, dict | None] = {  # name -> hybridformer longify options (None = the original model)
    "original": None,
    "sw2k": {"attention": "sliding_window:window=2048"},
    "sw4k": {"attention": "sliding_window:window=4096"},
    "sw2k+sink4": {"attention": "sliding_window:window=2048", "global_tokens": 4},
    "sw4k+sink4": {"attention": "sliding_window:window=4096", "global_tokens": 4},
    "sw2k+sink4@cache": {"attention": "sliding_window:window=2048,sink_positions=cache", "global_tokens": 4},
    "sw4k+sink4@cache": {"attention": "sliding_window:window=4096,sink_positions=cache", "global_tokens": 4},
    "yarn4": {"attention": "full", "rope_scaling": "yarn:4", "max_positions": 32768},
    "ntk4": {"attention": "full", "rope_scaling": "ntk:4", "max_positions": 32768},
    "linear4": {"attention": "full", "rope_scaling": "linear:4", "max_positions": 32768},
}
BUCKETS = [(0, 2048), (2048, 4096), (4096, 8192), (8192, 16384), (16384, 32768)]
MARKS = (8192, 16384, 32768)


# ----------------------------------------------------------------------------- memory


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def reset_peak() -> int:
    """Reset the peak-RSS high-water mark; returns the current RSS in KiB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS")


# ----------------------------------------------------------------------------- text


def transcript(archive: Path, member: str) -> str:
    """A QMSum meeting as plain text: one ``Speaker: words`` line per turn."""
    with tarfile.open(archive) as tar:
        meeting = json.load(tar.extractfile(member))
    return "\n".join(f"{turn['speaker']}: {turn['content']}" for turn in meeting["meeting_transcripts"])


def build_text(args: argparse.Namespace) -> None:
    source = Path(args.tokenizer)
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json" if source.is_dir() else source))
    ids: list[int] = []
    documents = []
    for name in args.documents.split(","):
        member = f"qmsum/data/ALL/{name}.json"
        text = transcript(Path(args.archive), member)
        doc_ids = tokenizer.encode(text, add_special_tokens=False).ids
        sep = tokenizer.encode("\n\n", add_special_tokens=False).ids if ids else []
        ids += sep + doc_ids
        documents.append({"document": member, "words": len(text.split()), "tokens": len(doc_ids)})
        if len(ids) > args.tokens:
            break
    if len(ids) <= args.tokens:
        raise SystemExit(f"the documents hold {len(ids)} tokens, fewer than {args.tokens} + 1")
    record = {"archive": str(args.archive), "documents": documents, "tokens_total": len(ids),
              "tokens_used": args.tokens + 1, "ids": ids[: args.tokens + 1]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record))
    print(json.dumps({k: v for k, v in record.items() if k != "ids"}, indent=1))


# ----------------------------------------------------------------------------- models


def load_variant(checkpoint: Path, variant: str) -> tuple[torch.nn.Module, dict]:
    ckpt = load_checkpoint(checkpoint)
    options = VARIANTS[variant]
    if options is None:
        return ckpt.model.eval(), {"variant": variant}
    plan = LongifyPlan(parse_attention_spec(options["attention"]), max_positions=options.get("max_positions"),
                       rope_scaling=options.get("rope_scaling"), global_tokens=options.get("global_tokens", 0))
    model, _, record = longify_checkpoint(ckpt, plan)
    return model, {"variant": variant, "longify": record}


def bucket_table(nll: list[float]) -> dict[str, dict]:
    """Perplexity per position bucket of the predicted token (position 1..N), plus 0-8k; a bucket the
    stream has only entered is marked incomplete."""
    out = {}
    for lo, hi in [*BUCKETS, (0, 8192)]:
        part = nll[max(lo - 1, 0) : hi - 1]  # nll[i] is the loss of token i + 1
        if part:
            out[f"{lo // 1024}-{hi // 1024}k"] = {"ppl": math.exp(statistics.fmean(part)), "tokens": len(part),
                                                 "complete": len(part) == hi - max(lo, 1)}
    return out


# ----------------------------------------------------------------------------- stream (perplexity + forward cost)


@torch.no_grad()
def stream(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    ids = torch.tensor(json.loads(Path(args.text).read_text())["ids"][: args.tokens + 1])
    model, result = load_variant(Path(args.checkpoint), args.variant)
    result.update(tokens=args.tokens, chunk=args.chunk, threads=args.threads, marks={}, complete=False)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cache, nll = DecodingCache(), []
    rss_model = reset_peak()
    result["rss_model_mib"] = rss_model / 1024
    start, cpu_start = time.perf_counter(), time.process_time()
    for begin in range(0, args.tokens, args.chunk):
        piece = ids[begin : min(begin + args.chunk, args.tokens)]
        logits = model.decode(piece[None], cache=cache, offset=begin)[0]
        nll += F.cross_entropy(logits.float(), ids[begin + 1 : begin + 1 + len(piece)], reduction="none").tolist()
        done = begin + len(piece)
        if done in MARKS:
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            result["marks"][str(done)] = {
                "seconds": elapsed, "tokens_per_s": done / elapsed, "cpu_seconds": cpu, "tokens_per_cpu_s": done / cpu,
                "peak_rss_mib": _status_kb("VmHWM") / 1024,
                "peak_over_model_mib": (_status_kb("VmHWM") - rss_model) / 1024,
                "cache_mib": cache_bytes(cache)[0] / 2**20}
        result.update(evaluated=done, seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu_start,
                      buckets=bucket_table(nll))
        write_json(out, {**result, "nll": nll})
        print(f"{args.variant}: {done} tokens, {result['seconds']:.0f} s, "
              f"{ {k: round(v['ppl'], 2) for k, v in result['buckets'].items()} }", flush=True)
    result["complete"] = True
    write_json(out, {**result, "nll": nll})


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- decoding


def cache_bytes(cache: DecodingCache) -> tuple[int, int]:
    """(allocated, filled) bytes of the attention states (the vocabulary-projection copy excluded)."""
    allocated = filled = 0
    for state in cache.values():
        if isinstance(state, (KVCache, RollingKVCache)) and state.keys is not None:
            size = state.keys.element_size() * (state.keys[0, 0, 0].numel() + state.values[0, 0, 0].numel())
            per_position = size * state.keys.shape[0] * state.keys.shape[1]
            allocated += per_position * state.keys.shape[2]
            filled += per_position * (state.length if isinstance(state, KVCache) else state.keys.shape[2])
    return allocated, filled


def filled_cache(model: torch.nn.Module, context: int) -> DecodingCache:
    """A decoding cache as after ``context`` tokens, filled with random keys/values of the real shape."""
    cache = DecodingCache()
    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            state = module.kernel.new_state()
            shape = (1, module.kv_heads, context, module.head_dim)
            if isinstance(state, RollingKVCache):
                state.extend(torch.randn(shape), torch.randn(shape))
            else:
                state.append(torch.randn(shape), torch.randn(shape))
            cache[module] = state
    return cache


@torch.no_grad()
def decode(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    model, result = load_variant(Path(args.checkpoint), args.variant)
    result.update(threads=args.threads, contexts={})
    token = torch.tensor([[42]])
    for context in (int(c) for c in args.contexts.split(",")):
        cache = filled_cache(model, context)
        model.decode(token, cache=cache, offset=context)  # warm-up (and the growing cache's one resize)
        times, cpu_times = [], []
        for step in range(args.steps):
            begin, cpu_begin = time.perf_counter(), time.process_time()
            model.decode(token, cache=cache, offset=context + 1 + step)
            times.append(time.perf_counter() - begin)
            cpu_times.append(time.process_time() - cpu_begin)
        allocated, filled = cache_bytes(cache)
        result["contexts"][str(context)] = {"ms_per_token": 1000 * statistics.median(times),
                                            "cpu_ms_per_token": 1000 * statistics.median(cpu_times),
                                            "cache_allocated_mib": allocated / 2**20,
                                            "cache_filled_mib": filled / 2**20}
        print(args.variant, context, result["contexts"][str(context)], flush=True)
        del cache
    write_json(Path(args.out), result)


# ----------------------------------------------------------------------------- report


def report(args: argparse.Namespace) -> None:
    results = [json.loads(p.read_text()) for p in sorted(Path(args.dir).glob("*.json")) if p.name != "text.json"]
    streams = [r for r in results if "buckets" in r]
    names = [f"{lo // 1024}-{hi // 1024}k" for lo, hi in BUCKETS]
    print("| variant | " + " | ".join(names) + " | 0-8k | 16-32k / 0-8k | tokens evaluated |")
    print("|---" * (len(names) + 4) + "|")
    for r in streams:
        b = r["buckets"]
        b = {n: v for n, v in b.items() if v["complete"] or v["tokens"] >= 256}  # no 1-token "buckets"
        cells = [("not run" if n not in b else f"{b[n]['ppl']:.2f}" if b[n]["complete"] else
                  f"{b[n]['ppl']:.2f} (first {b[n]['tokens']} tokens)") for n in [*names, "0-8k"]]
        ratio = f"{b['16-32k']['ppl'] / b['0-8k']['ppl']:.3f}" if "16-32k" in b and "0-8k" in b else "-"
        print(f"| {r['variant']} | " + " | ".join(cells) + f" | {ratio} | {r['evaluated']} |")
    print("\n| variant | " + " | ".join(f"{m // 1024}k: tokens/CPU-s (tokens/s), peak RSS (over model) MiB, cache MiB"
                                        for m in MARKS) + " |")
    print("|---" * (len(MARKS) + 1) + "|")
    for r in streams:
        cells = []
        for mark in MARKS:
            m = r["marks"].get(str(mark))
            cells.append("not run" if m is None else
                         f"{m['tokens_per_cpu_s']:.1f} ({m['tokens_per_s']:.1f}), {m['peak_rss_mib']:.0f} "
                         f"({m['peak_over_model_mib']:.0f}), "
                         f"{m['cache_mib']:.0f}")
        print(f"| {r['variant']} | " + " | ".join(cells) + " |")
    decodes = [r for r in results if "contexts" in r]
    if decodes:
        contexts = sorted({int(c) for r in decodes for c in r["contexts"]})
        print("\n| variant | " + " | ".join(f"{c // 1024}k: CPU ms/token (wall), cache MiB" for c in contexts) + " |")
        print("|---" * (len(contexts) + 1) + "|")
        for r in decodes:
            cells = [_decode_cell(r["contexts"][str(c)]) if str(c) in r["contexts"] else "not run" for c in contexts]
            print(f"| {r['variant']} | " + " | ".join(cells) + " |")


def publish(args: argparse.Namespace) -> None:
    """Result files for the repository: the per-token NLL becomes perplexity per 1,024 tokens."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(args.dir).glob("*.json")):
        result = json.loads(path.read_text())
        if path.name == "text.json" or not ("buckets" in result or "contexts" in result):
            continue
        nll = result.pop("nll", None)
        if nll is not None:
            result["ppl_per_1024"] = [round(math.exp(statistics.fmean(nll[i : i + 1024])), 2)
                                      for i in range(0, len(nll), 1024)]
        write_json(out / path.name, result)
        print(out / path.name)


def _decode_cell(point: dict) -> str:
    return (f"{point['cpu_ms_per_token']:.0f} ({point['ms_per_token']:.0f}), {point['cache_allocated_mib']:.0f}"
            + (f" ({point['cache_filled_mib']:.0f} filled)" if point["cache_filled_mib"] != point["cache_allocated_mib"]
               else ""))


def main() -> None:
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:  # RSS should track live memory (glibc returns big frees)
        os.execve(sys.executable, [sys.executable, *sys.argv],
                  {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"})
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    text = sub.add_parser("text")
    text.add_argument("--archive", default="../shared/data/qmsum/qmsum_ALL_train_val_test.tar.gz")
    text.add_argument("--documents", default="test/Bmr006,test/covid_9,test/Bro027")
    text.add_argument("--tokenizer", required=True, help="tokenizer.json or a checkpoint directory")
    text.add_argument("--tokens", type=int, default=32768)
    text.add_argument("--out", required=True)
    for name in ("stream", "decode"):
        p = sub.add_parser(name)
        p.add_argument("--checkpoint", required=True)
        p.add_argument("--variant", choices=list(VARIANTS), required=True)
        p.add_argument("--threads", type=int, default=1, help="1 makes CPU time a contention-proof cost measure")
        p.add_argument("--out", required=True)
    sub.choices["stream"].add_argument("--text", required=True)
    sub.choices["stream"].add_argument("--tokens", type=int, default=32768)
    sub.choices["stream"].add_argument("--chunk", type=int, default=512)
    sub.choices["decode"].add_argument("--contexts", default="1024,8192,32768")
    sub.choices["decode"].add_argument("--steps", type=int, default=16)
    rep = sub.add_parser("report")
    rep.add_argument("dir")
    pub = sub.add_parser("publish")
    pub.add_argument("dir")
    pub.add_argument("--out", default="benchmarks/results/longify")
    args = parser.parse_args()
    {"text": build_text, "stream": stream, "decode": decode, "report": report, "publish": publish}[args.command](args)


if __name__ == "__main__":
    main()
