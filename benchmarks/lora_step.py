"""LoRA vs full fine-tuning step cost on one checkpoint (e.g. SmolLM2-135M): both models built from it in one
process, optimizer steps interleaved (full, LoRA, full, LoRA, ...) on the same batch, each timed in process
CPU seconds (one thread) and wall seconds, so machine contention hits both alike. bf16 autocast, fused AdamW,
as the SciTLDR recipe trains. Peak memory needs one process per mode: ``--only full|lora`` runs a single
mode and prints its peak RSS. The loss is the trainer's (``--loss-chunk N`` as ``train.loss_chunk``).
``--base bf16|int8`` holds LoRA's frozen base as ``train.base_precision`` does, ``--activation-checkpointing
[selective]`` recomputes as ``train.activation_checkpointing`` does. ``--full-plain`` keeps the full fine-tune
as the recipe trains it (no checkpointing, whole loss) against LoRA with the savings.

    python benchmarks/lora_step.py runs/smollm2 --rounds 3 --batch 4 --tokens 512
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch

from hybridformer import load_checkpoint
from hybridformer.checkpoint import load_config_file, load_meta
from hybridformer.config import LoraConfig
from hybridformer.lora import add_lora, hold_frozen, lora_layout
from hybridformer.train import enable_activation_checkpointing
from hybridformer.train.losses import chunked_label_nll, label_smoothed_nll


def make(checkpoint: str, lora: bool, recompute: str | None = None, base: str = "fp32"):
    ckpt = load_checkpoint(checkpoint)
    if recompute:
        enable_activation_checkpointing(ckpt.model, selective=recompute == "selective")
    if lora:
        add_lora(ckpt.model, lora_layout(ckpt.model, ckpt.config, load_meta(checkpoint)), LoraConfig(rank=16))
        if base != "fp32":
            hold_frozen(ckpt.model, base)
    params = [p for p in ckpt.model.parameters() if p.requires_grad]
    return ckpt.model.train(), torch.optim.AdamW(params, lr=1e-5, fused=True), sum(p.numel() for p in params)


def step(model, optimizer, tokens: torch.Tensor, loss_chunk: int | None) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if loss_chunk is None:
            loss, _, count = label_smoothed_nll(model(tokens[:, :-1]), tokens[:, 1:], epsilon=0.0, ignore_index=-1)
        else:
            loss, _, count = chunked_label_nll(model.states(tokens[:, :-1]), model.output, tokens[:, 1:],
                                               chunk=loss_chunk, epsilon=0.0, ignore_index=-1)
    (loss / count).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.process_time() - cpu, time.perf_counter() - wall


def _peak_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--only", choices=["full", "lora"])
    parser.add_argument("--activation-checkpointing", nargs="?", const="all", choices=["all", "selective"],
                        help="recompute each layer in backward: all of it, or all but its products and attention")
    parser.add_argument("--base", choices=["fp32", "bf16", "int8"], default="fp32", help="LoRA's frozen base")
    parser.add_argument("--loss-chunk", type=int, help="as train.loss_chunk (both modes)")
    parser.add_argument("--full-plain", action="store_true", help="checkpointing and --loss-chunk for LoRA only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    modes = [args.only] if args.only else ["full", "lora"]
    savings = {mode: mode == "lora" or not args.full_plain for mode in modes}
    recompute = {mode: args.activation_checkpointing if savings[mode] else None for mode in modes}
    runs = {mode: make(args.checkpoint, mode == "lora", recompute[mode], args.base) for mode in modes}
    built = _peak_gib()  # loading and building, before any step
    tokens = torch.randint(3, load_config_file(args.checkpoint).vocab_size, (args.batch, args.tokens + 1))
    times: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for mode in modes:
            model, optimizer, _ = runs[mode]
            measured = step(model, optimizer, tokens, args.loss_chunk if savings[mode] else None)
            if round_:
                times[mode].append(measured)
    report = {mode: {"trained_params": runs[mode][2],
                     "cpu_s": round(statistics.median(t[0] for t in times[mode]), 2),
                     "wall_s": round(statistics.median(t[1] for t in times[mode]), 2)} for mode in modes}
    if args.only:
        report[args.only].update(peak_rss_gib=_peak_gib(), build_peak_gib=built)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
