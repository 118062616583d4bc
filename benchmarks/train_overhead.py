"""How much the training loop adds over a bare forward/backward/AdamW step (goal: < 5%).

Both loops train the same model on the same batches; the trainer's step also collates on the
fly, reseeds the RNG, computes label-smoothed loss, clips gradients and checks for NaN. Blocks of
steps alternate between the two so machine load affects both alike; the median block is reported.

    PYTHONPATH=src python benchmarks/train_overhead.py [--steps 20] [--blocks 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from hybridformer.config import ExperimentConfig, load_config
from hybridformer.data.batching import collate
from hybridformer.models import build_model
from hybridformer.train.distributed import DistEnv
from hybridformer.train.state import RunDir
from hybridformer.train.trainer import _Trainer

MODEL = ["model.d_model=256", "model.heads=4", "model.ffn_dim=1024", "model.encoder.layers=3",
         "model.decoder.layers=3", "data.builtin=numbers", "data.builtin_train=4000", "data.max_tokens=2048",
         "train.max_steps=100000", "train.device=cpu"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--blocks", type=int, default=5)
    args = parser.parse_args()
    cfg = load_config(None, MODEL, ExperimentConfig)
    trainer = _Trainer(cfg, RunDir(tempfile.mkdtemp()), DistEnv(), resume=False, progress=False)
    bare = build_model(trainer.model_cfg)
    bare.train()
    optimizer = torch.optim.AdamW(bare.parameters(), lr=1e-4)
    pad = trainer.model_cfg.pad_id

    def bare_steps(batches: list) -> None:
        for batch in batches:
            logits = bare(batch["src"], batch["tgt_in"])
            F.cross_entropy(logits.flatten(0, 1), batch["tgt_out"].flatten(), ignore_index=pad).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    def trainer_steps() -> None:
        for _ in range(args.steps):
            trainer.step += 1
            trainer._train_step()

    timings: dict[str, list[float]] = {"bare": [], "trainer": []}
    for block in range(args.blocks + 1):  # block 0 warms up
        position = trainer.stream.position
        batches = [collate(trainer.stream.next_step()[0], pad) for _ in range(args.steps)]
        trainer.stream.position = position  # the trainer replays the very same batches
        start = time.perf_counter()
        bare_steps(batches)
        middle = time.perf_counter()
        trainer_steps()
        end = time.perf_counter()
        if block:
            timings["bare"].append(middle - start)
            timings["trainer"].append(end - middle)
    bare_t, train_t = statistics.median(timings["bare"]), statistics.median(timings["trainer"])
    print(f"threads={torch.get_num_threads()} steps/block={args.steps} blocks={args.blocks}")
    print(f"bare loop    {bare_t / args.steps * 1000:8.1f} ms/step")
    print(f"trainer loop {train_t / args.steps * 1000:8.1f} ms/step")
    print(f"overhead     {100 * (train_t / bare_t - 1):+8.1f} %")


if __name__ == "__main__":
    main()
