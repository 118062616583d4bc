"""Peak memory of ``hybridformer convert`` against the model's size: each conversion runs in a fresh
process; the increase of its peak RSS over the RSS after imports is compared with the size of the
written model.safetensors (float32).

    nice -n 10 python benchmarks/interop/convert_memory.py SRC [SRC ...] --work /tmp/iop/mem
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import hybridformer, torch, transformers, gguf  # imports counted in the baseline
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
baseline = rss_mb()
start = time.perf_counter()
out = hybridformer.convert(sys.argv[1], sys.argv[2], overwrite=True)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
size = (Path(out) / "model.safetensors").stat().st_size / 2**20
print(json.dumps({"baseline_mb": round(baseline), "peak_mb": round(peak), "model_mb": round(size),
                  "increase_over_model": round((peak - baseline) / size, 2), "seconds": round(seconds, 1)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sources", nargs="+")
    parser.add_argument("--work", default="/tmp/iop/mem")
    args = parser.parse_args()
    for index, source in enumerate(args.sources):
        out = Path(args.work) / f"out{index}"
        result = subprocess.run([sys.executable, "-c", CHILD, source, str(out)], capture_output=True, text=True)
        line = result.stdout.strip().splitlines()[-1] if result.returncode == 0 else result.stderr[-500:]
        print(json.dumps({"source": source, **(json.loads(line) if result.returncode == 0 else {"error": line})}))


if __name__ == "__main__":
    main()
