"""Decoding speed of converted SmolLM2-135M vs transformers.generate on the same GGUF, same threads, interleaved.

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/interop/smollm2_speed.py --ckpt /tmp/smol --threads 1 \\
        --repeats 3 --out benchmarks/results/smollm2_speed.json

Both sides decode the same prompt ids (32 tokens of tinyshakespeare each, batch 1 and 8) with 64 new
tokens, fp32, greedy and beam 4 (length penalty 1, early stopping). Tokens/s counts generated tokens;
it is reported per wall-clock second and per CPU second of this process (``time.process_time``: on a
machine shared with other jobs the wall clock also counts the time other processes held the core).
Beam search runs with ``at_budget="stop"`` (transformers' ``max_new_tokens`` convention), and
transformers gets a logits processor that drops the padding token and renormalises, as our scorer
does, so both search the same distribution and the outputs are compared token for token.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

GGUF = Path(__file__).resolve().parents[3] / "shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT = Path(__file__).resolve().parents[3] / "shared/data/tinyshakespeare/input.txt"
SETTINGS = [("greedy", 1, 1), ("greedy", 8, 1), ("beam4", 1, 4), ("beam4", 8, 4)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt", required=True, help="SmolLM2 converted with `hybridformer convert`")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--only", nargs="*", default=[], help="e.g. greedy8 beam41")
    parser.add_argument("--out", type=Path, help="write the per-repeat numbers and the summary as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, LogitsProcessor, LogitsProcessorList

    from hybridformer.engines import GenerationOptions, load_engine

    hf = AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name, dtype=torch.float32).eval()
    decoder = load_engine(args.ckpt)
    ids = decoder.tokenizer.encode(TEXT.read_text()[:20000], add_special_tokens=False).ids
    prompts = [ids[i * 300 : i * 300 + 32] for i in range(8)]
    pad, eos = decoder.config.pad_id, decoder.config.eos_id

    class WithoutPadding(LogitsProcessor):
        """Padding gets no probability mass at all (renormalised), as in our ModelScorer."""

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            return scores.index_fill(-1, torch.tensor([pad]), float("-inf")).log_softmax(-1)

    def ours(batch: int, beam: int) -> list[list[int]]:
        opts = GenerationOptions(beam=beam, max_len_a=0.0, max_len_b=args.new, at_budget="stop")
        return decoder.decode_batch(prompts[:batch], opts)

    def theirs(batch: int, beam: int) -> list[list[int]]:
        x = torch.tensor(prompts[:batch])
        with torch.no_grad():
            out = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=args.new, do_sample=False,
                              num_beams=beam, early_stopping=True, length_penalty=1.0, pad_token_id=pad,
                              eos_token_id=eos, logits_processor=LogitsProcessorList([WithoutPadding()]))
        rows = out[:, x.shape[1]:].tolist()
        return [r[: r.index(eos)] if eos in r else r for r in rows]

    settings = [s for s in SETTINGS if f"{s[0]}{s[1]}" in args.only or not args.only]
    runs: dict[str, dict[str, list]] = {f"{n} batch {b}": {"ours": [], "transformers": [], "same": []}
                                        for n, b, _ in settings}
    for repeat in range(args.repeats):
        for name, batch, beam in settings:
            key, outputs = f"{name} batch {batch}", {}
            order = (("ours", ours), ("transformers", theirs))
            for engine, fn in order if repeat % 2 == 0 else order[::-1]:
                wall, cpu = time.perf_counter(), time.process_time()
                outputs[engine] = fn(batch, beam)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                tokens = sum(map(len, outputs[engine]))
                runs[key][engine].append({"tokens": tokens, "wall_s": wall, "cpu_s": cpu})
                print(f"  {engine}: {tokens} tokens, {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
            runs[key]["same"].append(outputs["ours"] == outputs["transformers"])
            print(f"repeat {repeat} {key}: same tokens {runs[key]['same'][-1]}", flush=True)
    summary = {}
    for key, r in runs.items():
        best = {e: {"tok_per_wall_s": max(x["tokens"] / x["wall_s"] for x in r[e]),
                    "tok_per_cpu_s": max(x["tokens"] / x["cpu_s"] for x in r[e])} for e in ("ours", "transformers")}
        summary[key] = best | {
            "speedup_wall": best["ours"]["tok_per_wall_s"] / best["transformers"]["tok_per_wall_s"],
            "speedup_cpu": best["ours"]["tok_per_cpu_s"] / best["transformers"]["tok_per_cpu_s"],
            "speedup_cpu_per_repeat": [t["cpu_s"] / o["cpu_s"] * o["tokens"] / t["tokens"]
                                       for o, t in zip(r["ours"], r["transformers"], strict=True)],
            "same_tokens": all(r["same"])}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"threads": args.threads, "new_tokens": args.new, "runs": runs,
                                        "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
