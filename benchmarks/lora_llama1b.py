"""LoRA training of a 1B-parameter Llama-shaped model (Llama-3.2-1B's shape, random weights built here) with the
frozen base held in bf16 or int8: peak resident memory and tokens/s of a few optimizer steps on random tokens.

The base is built directly in bf16 (never a float32 copy), then its embedding and norms are put back in
float32 and its projections held as ``train.base_precision`` holds them (``hold_frozen``); the adapters (rank 16
on q, k, v, o, gate, up, down) train in float32 under bf16 autocast with AdamW, as ``hybridformer train`` does.
Each base runs in its own process, one after the other. Peak RSS is reported for building the model (it is
built in bf16 whatever the base) and, reset after it, for training alone (Linux); tokens/s by wall and CPU time.

    python benchmarks/lora_llama1b.py --steps 3 --tokens 512 --bases bf16,int8
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from hybridformer import ModelConfig, build_model
from hybridformer.config import LoraConfig
from hybridformer.lora import add_lora, hold_frozen, lora_layout

LLAMA_32_1B = dict(arch="decoder_lm", vocab_size=128256, d_model=2048, heads=32, kv_heads=8, ffn_dim=8192,
                   activation="swiglu", norm="rmsnorm", position="rope", rope_base=500000.0, embed_scale=False,
                   attention_bias=False, ffn_bias=False, tie_embeddings=True, dropout=0.0, max_positions=8192,
                   pad_id=128004, bos_id=128000, eos_id=128001, decoder={"layers": 16})


def peak_rss_kib() -> int:
    """VmHWM: the peak resident set since the process started or its last reset."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0])


def one(base: str, steps: int, n_tokens: int) -> dict:
    torch.manual_seed(0)
    cfg = ModelConfig(**LLAMA_32_1B)
    torch.set_default_dtype(torch.bfloat16)
    model = build_model(cfg)
    torch.set_default_dtype(torch.float32)
    parameters = sum(p.numel() for p in model.parameters())
    layers = add_lora(model, lora_layout(model, cfg, {}), LoraConfig(rank=16, alpha=32))
    for module in model.modules():  # embedding, norms and adapters in float32; frozen projections stay bf16
        for param in module.parameters(recurse=False):
            if param.requires_grad or not isinstance(module, torch.nn.Linear):
                param.data = param.data.float()
    hold_frozen(model, base)
    gc.collect()
    setup_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    Path("/proc/self/clear_refs").write_text("5")  # Linux: restart the peak (VmHWM), so it counts training alone
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-4)
    tokens = torch.randint(0, cfg.vocab_size, (1, n_tokens + 1))
    times = []
    for _ in range(steps):
        started, cpu = time.perf_counter(), time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append((time.perf_counter() - started, time.process_time() - cpu))
    steady = times[1:] or times
    return {
        "base": base, "parameters": parameters, "adapter_parameters": sum(t.numel() for t in layers.tensors(
            dict(model.named_parameters())).values()),
        "setup_peak_rss_gib": round(setup_rss, 2), "training_peak_rss_gib": round(peak_rss_kib() / 2**20, 2),
        "step_s": [round(t[0], 2) for t in times],
        "tokens_per_s": round(n_tokens / (sum(t[0] for t in steady) / len(steady)), 1),
        "tokens_per_cpu_s": round(n_tokens / (sum(t[1] for t in steady) / len(steady)), 1),
        "threads": torch.get_num_threads(), "loss": round(loss.item(), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=512, help="tokens per step (one sequence)")
    parser.add_argument("--bases", default="bf16,int8", help="comma-separated: bf16, int8 (one process each)")
    parser.add_argument("--one", choices=["bf16", "int8"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.steps, args.tokens)))
        return
    for base in args.bases.split(","):
        subprocess.run([sys.executable, __file__, "--one", base, "--steps", str(args.steps),
                        "--tokens", str(args.tokens)], check=True)


if __name__ == "__main__":
    main()
