#!/usr/bin/env bash
# The checks that need a GPU: the tests that ask for CUDA (they skip without it).
# Without a GPU (or without CUDA in torch) it says so and exits 0, so it can run anywhere.
#
#   benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA device visible to torch; nothing to check" >&2
  exit 0
fi
python -c "import torch; print('gpu_check:', torch.cuda.get_device_name(0), 'torch', torch.__version__)"
# every test that asks for CUDA skips without it; here they run
python -m pytest tests -q -x -k "cuda or gpu" -p no:cacheprovider || { rc=$?; [ "$rc" -eq 5 ] || exit "$rc"; }  # 5: none selected
# `bench decode` measures the CPU engine and CPU peers only (the weight formats are CPU kernels and the
# command has no --device yet), so it is not run here.
