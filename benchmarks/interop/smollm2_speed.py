"""Decoding speed of converted SmolLM2-135M vs transformers.generate on the same GGUF, same threads, interleaved.

    nice -n 10 python benchmarks/interop/smollm2_speed.py --ckpt /tmp/iop/smol --threads 1 --repeats 3

Both sides decode the same prompt ids (32 tokens of tinyshakespeare each) with 64 new tokens, fp32;
tokens/s counts generated tokens (both stop at EOS; greedy outputs are checked equal).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

GGUF = Path(__file__).resolve().parents[3] / "shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT = Path(__file__).resolve().parents[3] / "shared/data/tinyshakespeare/input.txt"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--only", nargs="*", default=[], help="e.g. greedy8 beam41")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    from hybridformer.generation import GenerationOptions, decode_batch
    from hybridformer.inference import load_decoder

    hf = AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name, dtype=torch.float32).eval()
    decoder = load_decoder(args.ckpt)
    ids = decoder.tokenizer.encode(TEXT.read_text()[:20000], add_special_tokens=False).ids
    prompts = [ids[i * 300 : i * 300 + 32] for i in range(8)]
    pad = decoder.config.pad_id

    def ours(batch: int, beam: int) -> list[list[int]]:
        opts = GenerationOptions(beam=beam, max_len_a=0.0, max_len_b=args.new)
        return decode_batch(decoder, prompts[:batch], opts)

    def theirs(batch: int, beam: int) -> list[list[int]]:
        x = torch.tensor(prompts[:batch])
        with torch.no_grad():
            out = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=args.new, do_sample=False,
                              num_beams=beam, early_stopping=True, length_penalty=1.0, pad_token_id=pad,
                              suppress_tokens=[pad])
        rows = out[:, x.shape[1]:].tolist()
        eos = decoder.config.eos_id
        return [r[: r.index(eos)] if eos in r else [t for t in r if t != pad] for r in rows]

    settings = [("greedy", 1, 1), ("greedy", 8, 1), ("beam4", 1, 4)]
    settings = [s for s in settings if f"{s[0]}{s[1]}" in args.only or not args.only]
    results = {f"{name} batch {b}": {"ours": [], "transformers": []} for name, b, _ in settings}
    for repeat in range(args.repeats):
        for name, batch, beam in settings:
            outputs = {}
            for engine, fn in (("ours", ours), ("transformers", theirs)) if repeat % 2 == 0 else (
                    ("transformers", theirs), ("ours", ours)):
                start = time.perf_counter()
                outputs[engine] = fn(batch, beam)
                seconds = time.perf_counter() - start
                results[f"{name} batch {batch}"][engine].append(sum(map(len, outputs[engine])) / seconds)
                print(f"  {engine}: {seconds:.1f} s, {sum(map(len, outputs[engine]))} tokens, "
                      f"{torch.get_num_threads()} threads", flush=True)
            same = outputs["ours"] == outputs["transformers"]
            print(f"repeat {repeat} {name} batch {batch}: ours {results[f'{name} batch {batch}']['ours'][-1]:.1f} "
                  f"tok/s, transformers {results[f'{name} batch {batch}']['transformers'][-1]:.1f} tok/s, "
                  f"same tokens: {same}", flush=True)
    summary = {k: {e: max(v) for e, v in r.items()} | {"speedup": max(r["ours"]) / max(r["transformers"])}
               for k, r in results.items()}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
