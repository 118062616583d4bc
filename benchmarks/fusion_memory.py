"""Peak memory of checkpoint averaging: streaming (average_checkpoints) vs. loading every checkpoint.

Usage: PYTHONPATH=src python benchmarks/fusion_memory.py --n 5 --d-model 512 --layers 6 --workdir /tmp/fusion-bench

Each measurement runs in a fresh Python process and reports its peak RSS (ru_maxrss) and its
peak anonymous memory (RssAnon, sampled every 2 ms): RSS also counts the memory-mapped input
files, which are page cache the kernel can drop; RssAnon is the memory the process really needs.
Both include the interpreter and torch (measured alone as "baseline").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

MAKE = """
import torch, sys
from hybridformer import ModelConfig, build_model, save_checkpoint
d, layers, n, work = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cfg = ModelConfig(d_model=d, ffn_dim=4 * d, heads=8, encoder={"layers": layers}, decoder={"layers": layers})
for i in range(n):
    torch.manual_seed(i)
    model = build_model(cfg)
    save_checkpoint(f"{work}/step_{i}", model, cfg)
print(sum(p.numel() for p in model.parameters()))
"""

RUNS = {
    "baseline": "import torch, hybridformer",
    "streaming": "from hybridformer.fusion import average_checkpoints, last_checkpoints\n"
                 "average_checkpoints(last_checkpoints(WORK, N), WORK + '/avg')",
    "load_all": "import torch\nfrom hybridformer.checkpoint import load_weights\n"
                "from hybridformer.fusion import last_checkpoints\n"
                "ws = [load_weights(p) for p in last_checkpoints(WORK, N)]\n"
                "avg = {k: sum(w[k] for w in ws) / len(ws) for k in ws[0]}",
}


SAMPLER = """
import threading, time
peak = [0]
def _sample():
    while True:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                peak[0] = max(peak[0], int(line.split()[1]))
        time.sleep(0.002)
threading.Thread(target=_sample, daemon=True).start()
"""
REPORT = """
import resource
time.sleep(0.01)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, peak[0] / 1024)
"""


def peak_memory_mb(code: str, work: str, n: int) -> tuple[float, float, float]:
    wrapper = f"{SAMPLER}\nWORK, N = {work!r}, {n}\n{code}\n{REPORT}"
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", wrapper], check=True, capture_output=True, text=True).stdout
    rss, anon = (float(x) for x in out.split()[-2:])
    return rss, anon, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--workdir", default="/tmp/fusion-bench")
    args = parser.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    params = int(subprocess.run([sys.executable, "-c", MAKE, str(args.d_model), str(args.layers), str(args.n),
                                 args.workdir], check=True, capture_output=True, text=True).stdout.split()[-1])
    result = {"checkpoints": args.n, "params": params, "model_mb": round(params * 4 / 2**20, 1)}
    for name, code in RUNS.items():
        rss, anon, seconds = peak_memory_mb(code, args.workdir, args.n)
        result[f"{name}_peak_rss_mb"] = round(rss, 1)
        result[f"{name}_peak_anon_mb"] = round(anon, 1)
        result[f"{name}_seconds"] = round(seconds, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
