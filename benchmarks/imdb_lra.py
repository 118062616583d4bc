"""Long Range Arena "Text" on IMDB (Tay et al., 2021): one byte-level classifier per attention mechanism.

Every mechanism trains the same encoder (configs/imdb-lra.yaml: d_model 128, 2 layers, 4 heads,
ffn 256, documents truncated to 4096 bytes) for the same number of steps on the same batches
(data order is a function of train.seed), then its best checkpoint (lowest validation loss) is
scored on a fixed random subset of the 25k test reviews. Each mechanism runs in a fresh
subprocess, which also measures one training step (forward, backward, AdamW) on a full 1×4096
batch: median time and peak memory above the idle process (RSS high-water mark, as
``hybridformer bench attention`` does). Writes ``results.json`` and ``results.md`` under --out.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/imdb_lra.py --out benchmarks/imdb-lra
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/imdb_lra.py --out /tmp/lra --tiny   # minutes: a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from hybridformer import evaluate_classifier, train
from hybridformer.config import ExperimentConfig, load_config
from hybridformer.train import read_metrics
from hybridformer.train.state import RunDir

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "imdb-lra.yaml"
# options per mechanism: LRA-like settings (Linformer k=256, BigBird blocks of 64), sized for 4096 bytes
MECHANISMS: dict[str, dict] = {
    "full": {},
    "chunked": {"chunk_size": 512},
    "sliding_window": {"window": 256, "num_global": 1},
    "block_sparse": {"block_size": 64, "num_random_blocks": 2},
    "linear": {},
    "performer": {"feature_dim": 128},
    "linformer": {"proj_len": 256, "max_len": 4096},
    "nystrom": {"num_landmarks": 64},
}
TINY = ["train.max_steps=4", "train.eval_every=2", "train.warmup_steps=1", "data.limit_train=48",
        "data.limit_valid=16", "data.max_src_len=512", "data.max_tokens=1024"]


def overrides_for(mechanism: str, extra: list[str]) -> list[str]:
    options = [f"model.encoder.attention.{key}={value}" for key, value in MECHANISMS[mechanism].items()]
    return [f"model.encoder.attention.name={mechanism}", *options, *extra]


def probe_step(cfg: ExperimentConfig, repeats: int = 3) -> dict:
    """Median time and peak memory of one AdamW training step on a full-length batch (1 × max_src_len)."""
    from hybridformer.models import build_model

    model_cfg = cfg.model.model_copy(update={"vocab_size": 260})
    torch.manual_seed(0)
    model = build_model(model_cfg).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(4, 260, (1, cfg.data.max_src_len))
    labels = torch.zeros(1, dtype=torch.long)

    def step() -> None:
        torch.nn.functional.cross_entropy(model(tokens), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up (and the optimizer state exists from here on)
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the RSS high-water mark
    step()
    peak_mib = (_status_kb("VmHWM") - before) / 1024
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"probe_step_s": statistics.median(times), "probe_peak_mib": peak_mib,
            "params": sum(p.numel() for p in model.parameters())}


def _status_kb(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{name} not in /proc/self/status")


def worker(mechanism: str, out: Path, extra: list[str], test_limit: int) -> dict:
    """Train and score one mechanism (the subprocess side)."""
    cfg = load_config(CONFIG, overrides_for(mechanism, extra), ExperimentConfig)
    result = {"mechanism": mechanism, "options": MECHANISMS[mechanism], **probe_step(cfg)}  # before the data
    start = time.perf_counter()
    trained = train(cfg, out / mechanism)
    result["train_wall_s"] = time.perf_counter() - start
    events = read_metrics(RunDir(out / mechanism).metrics)
    steps = [e["step_s"] for e in events if e["kind"] == "train"]
    valid = [e for e in events if e["kind"] == "valid"]
    best = min(valid, key=lambda e: e["loss"])
    start = time.perf_counter()
    test = evaluate_classifier(RunDir(out / mechanism).best, cfg.data.train_file, split="test", limit=test_limit,
                               seed=0)
    result.update(status=trained.status, steps=trained.step, median_step_s=statistics.median(steps),
                  best_step=best["step"], valid_accuracy=100 * best["accuracy"], valid_loss=best["loss"],
                  test_accuracy=test.score, test_documents=test.details["documents"], test_signature=test.signature,
                  test_wall_s=time.perf_counter() - start)
    return result


def run_all(mechanisms: list[str], out: Path, extra: list[str], test_limit: int) -> list[dict]:
    results = []
    # a fixed mmap threshold makes glibc return every large free to the OS, so RSS tracks live memory
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    for mechanism in mechanisms:
        command = [sys.executable, __file__, "--worker", mechanism, "--out", str(out), "--test-limit",
                   str(test_limit), *[arg for item in extra for arg in ("--set", item)]]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            result = {"mechanism": mechanism, "options": MECHANISMS[mechanism], "status": "failed", "error": tail}
        else:
            result = json.loads(done.stdout.strip().splitlines()[-1])
        result["wall_s"] = time.perf_counter() - start
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def markdown_table(results: list[dict], length: int) -> str:
    lines = [f"| mechanism | options | test acc (%) | valid acc (%) | median s/step | s/step 1×{length} | "
             f"peak MiB 1×{length} | params | wall (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        options = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "—"
        if r.get("status") == "failed":
            lines.append(f"| {r['mechanism']} | {options} | failed: {r['error'][:80]} |||||||")
            continue
        lines.append(f"| {r['mechanism']} | {options} | {r['test_accuracy']:.2f} | {r['valid_accuracy']:.2f} | "
                     f"{r['median_step_s']:.3f} | {r['probe_step_s']:.3f} | {r['probe_peak_mib']:.0f} | "
                     f"{r['params']:,} | {r['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="results and one run directory per mechanism")
    parser.add_argument("--mechanisms", nargs="+", default=list(MECHANISMS), choices=list(MECHANISMS))
    parser.add_argument("--test-limit", type=int, default=1000, help="test reviews scored (fixed random subset)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--tiny", action="store_true", help="a few steps on a few short reviews (smoke test)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.worker:
        print(json.dumps(worker(args.worker, args.out, args.set, args.test_limit)))
        return
    extra = (TINY if args.tiny else []) + args.set
    args.out.mkdir(parents=True, exist_ok=True)
    test_limit = min(args.test_limit, 32) if args.tiny else args.test_limit
    results = run_all(args.mechanisms, args.out, extra, test_limit)
    (args.out / "results.json").write_text(json.dumps(
        {"config": str(CONFIG.relative_to(ROOT)), "overrides": extra, "test_limit": test_limit,
         "threads": torch.get_num_threads(), "results": results}, indent=2))
    table = markdown_table(results, load_config(CONFIG, extra, ExperimentConfig).data.max_src_len)
    (args.out / "results.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
