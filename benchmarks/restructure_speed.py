"""Speed of train, generate and the attention benchmark in two source trees, interleaved (issue 16).

``python benchmarks/restructure_speed.py --before /tmp/before/src --after src --rounds 3 --out DIR``
runs the same workload in fresh processes alternating between the trees (ABBA order), one CPU
thread each (OMP_NUM_THREADS=1, torch.set_num_threads(1)), and prints the medians per tree:
``train`` (40 optimizer steps of the quickstart Transformer on the built-in numbers task, wall
seconds of ``train()``), ``generate`` (beam 4 over 80 held-out lines, one shared checkpoint written
once by the *before* tree) and ``attention`` (the sum of the medians of ``bench attention`` points:
full, chunked, sliding_window, linear at 512 and 1024 tokens, causal, forward only).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(checkpoint: str, out: str) -> dict:
    import torch

    from hybridformer import generate, train
    from hybridformer.bench import run_benchmark
    from hybridformer.data.tasks import make_task
    from hybridformer.quickstart import experiment

    torch.set_num_threads(1)
    result = {}
    start = time.perf_counter()
    train(experiment("transformer", steps=40, seed=1, n_train=800, n_valid=50), Path(out) / "run")
    result["train"] = time.perf_counter() - start
    lines = [src for src, _ in make_task("numbers", 100, 80, seed=7).valid]
    start = time.perf_counter()
    outputs = list(generate(checkpoint, lines, beam=4))
    result["generate"] = time.perf_counter() - start
    assert len(outputs) == len(lines)
    points = run_benchmark(["full", "chunked", "sliding_window:window=128", "linear"], [512, 1024], causal=True,
                           repeats=5)
    result["attention"] = sum(p["time_s"] for p in points)
    return result


def run(tree: str, checkpoint: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve()), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, __file__, "--worker", checkpoint, tmp], env=env, capture_output=True,
                              text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_checkpoint(tree: str, out: Path) -> str:
    code = ("from hybridformer import train; from hybridformer.quickstart import experiment; "
            f"train(experiment('transformer', steps=60, seed=2, n_train=800, n_valid=50), {str(out)!r})")
    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve()), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return str(out / "checkpoints" / "best")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=2, metavar=("CHECKPOINT", "OUT"))
    parser.add_argument("--before", default="/tmp/before/src")
    parser.add_argument("--after", default="src")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/restructure"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = make_checkpoint(args.before, Path(tmp) / "shared")
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for i in range(args.rounds):
            order = ["before", "after"] if i % 2 == 0 else ["after", "before"]
            for name in order:
                runs[name].append(run(getattr(args, name), checkpoint))
                print(name, runs[name][-1], flush=True)
    summary = {name: {key: statistics.median(r[key] for r in rows) for key in rows[0]} for name, rows in runs.items()}
    summary["ratio_after_over_before"] = {key: summary["after"][key] / summary["before"][key]
                                          for key in summary["before"]}
    (args.out / "speed.json").write_text(json.dumps({"runs": runs, "median": summary}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
