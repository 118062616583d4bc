"""Does llama.cpp run our GGUF exports as we do? Logits of ``llama-cpp-python`` against ours, in f32.

For each model: ``export --to gguf`` (f32), load the file in llama.cpp (``llama-cpp-python``, optional: a benchmark,
never a test dependency), score one token sequence with every position's logits kept, and report the largest
absolute difference from our own forward pass (goal: <= 1e-3). The models are a converted checkpoint given with
``--checkpoint`` (e.g. SmolLM2-135M) and tiny random transformers models of each GGUF layout, made here with the
tests' ``save_tiny`` and given the byte-level BPE tokenizer of ``--tokenizer-from`` (no downloads).

    python benchmarks/llama_cpp_parity.py --checkpoint /work/runs/lora-smollm2-base --out /tmp/parity
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from hybridformer import convert, load_checkpoint
from hybridformer.interop.gguf_export import export_gguf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tiny-model factory the tests use
from interop.hf_tiny import save_tiny  # noqa: E402

TINY = {  # save_tiny kind -> overrides that llama.cpp's architecture needs
    "llama": {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}},
    "qwen2": {}, "qwen3": {"attention_bias": False}, "lfm2": {}, "granite-hybrid": {},
    "falcon-h1": {"mamba_norm_before_gate": False, "mamba_proj_bias": False, "projectors_bias": False,
                  "attention_bias": False},
    "falcon-h1-nonorm": {},
    "gemma3": {"num_hidden_layers": 6, "layer_types": None, "query_pre_attn_scalar": 16,  # llama.cpp's fixed pattern
               "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                   "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}},
    "gpt2": {"bos_token_id": 0, "eos_token_id": 0},
}


def logits_gap(checkpoint: Path, work: Path, tokens: list[int]) -> dict:
    """Export ``checkpoint`` as f32 GGUF, score ``tokens`` in llama.cpp and here; the largest logit difference."""
    import llama_cpp

    file = export_gguf(checkpoint, work / "model.gguf", overwrite=True)
    llm = llama_cpp.Llama(str(file), n_ctx=max(64, len(tokens)), n_batch=len(tokens), logits_all=True, n_threads=1,
                          type_k=0, type_v=0, verbose=False)  # GGML_TYPE_F32 caches (llama.cpp's default is f16)
    llm.eval(tokens)
    theirs = torch.from_numpy(llm.scores[: len(tokens)].copy()).float()
    with torch.no_grad():
        ours = load_checkpoint(checkpoint).model(torch.tensor([tokens]))[0].float()
    gap = (theirs - ours).abs().max().item()
    return {"max_abs_diff": gap, "max_abs_logit": ours.abs().max().item(), "tokens": len(tokens),
            "same_argmax": float((theirs.argmax(-1) == ours.argmax(-1)).float().mean()), "within_1e-3": gap <= 1e-3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, action="append", default=[], help="Converted checkpoint(s).")
    parser.add_argument("--tokenizer-from", type=Path, required=True,
                        help="A folder holding a byte-level BPE tokenizer.json for the tiny models.")
    parser.add_argument("--tiny", default=",".join(TINY), help="Tiny layouts to check (save_tiny kinds).")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"--out {args.out} is not empty; the check writes its GGUF files and tiny models there")
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer = args.tokenizer_from / "tokenizer.json"
    from tokenizers import Tokenizer

    tokens = Tokenizer.from_file(str(tokenizer)).encode("The quick brown fox jumps over the lazy dog. " * 3).ids
    results = {}
    for checkpoint in args.checkpoint:
        results[str(checkpoint)] = logits_gap(checkpoint, args.out, tokens)
        print(checkpoint, results[str(checkpoint)], flush=True)
    vocab = Tokenizer.from_file(str(tokenizer)).get_vocab_size()
    for kind in filter(None, args.tiny.split(",")):
        torch.manual_seed(0)
        work = args.out / kind
        _, folder = save_tiny(kind, work / "hf", vocab_size=vocab, **TINY[kind])
        shutil.copy(tokenizer, folder / "tokenizer.json")
        try:
            results[kind] = logits_gap(convert(folder, work / "ckpt"), work, tokens)
        except Exception as exc:  # report llama.cpp's refusal or crash for this layout, go on with the others
            results[kind] = {"error": f"{type(exc).__name__}: {exc}"}
        print(kind, results[kind], flush=True)
    (args.out / "parity.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
