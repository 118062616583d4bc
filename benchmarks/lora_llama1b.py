"""LoRA training of a 1B-parameter Llama-shaped model (Llama-3.2-1B's shape, random weights built here) with the
frozen base held in bf16: peak resident memory and tokens/s of a few optimizer steps on random tokens.

The base is built directly in bf16 (never a float32 copy), then its embedding and norms are put back in
float32, as ``train.base_precision=bf16`` keeps them; the adapters (rank 16 on q, k, v, o, gate, up, down)
train in float32 under bf16 autocast with AdamW, as ``hybridformer train`` does.

    python benchmarks/lora_llama1b.py --steps 3 --tokens 512
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from hybridformer import ModelConfig, build_model
from hybridformer.config import LoraConfig
from hybridformer.lora import add_lora, lora_layout

LLAMA_32_1B = dict(arch="decoder_lm", vocab_size=128256, d_model=2048, heads=32, kv_heads=8, ffn_dim=8192,
                   activation="swiglu", norm="rmsnorm", position="rope", rope_base=500000.0, embed_scale=False,
                   attention_bias=False, ffn_bias=False, tie_embeddings=True, dropout=0.0, max_positions=8192,
                   pad_id=128004, bos_id=128000, eos_id=128001, decoder={"layers": 16})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=512, help="tokens per step (one sequence)")
    args = parser.parse_args()
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
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-4)
    tokens = torch.randint(0, cfg.vocab_size, (1, args.tokens + 1))
    times = []
    for _ in range(args.steps):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    steady = times[1:] or times
    print(json.dumps({
        "parameters": parameters, "adapter_parameters": sum(t.numel() for t in layers.tensors(
            dict(model.named_parameters())).values()),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "step_s": [round(t, 2) for t in times], "tokens_per_s": round(args.tokens / (sum(steady) / len(steady)), 1),
        "threads": torch.get_num_threads(), "loss": round(loss.item(), 3)}))


if __name__ == "__main__":
    main()
