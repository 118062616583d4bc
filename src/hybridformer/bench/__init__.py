"""Benchmarks: measured, never asserted (the numbers go to docs/RESULTS.md).

attention scaling (time and peak memory vs length), layer-type cost, compression speed, and
training/generation throughput against peer libraries.
"""

from .attention import PointSpec, markdown, parse_mechanism, run_benchmark, write_outputs

__all__ = ["PointSpec", "markdown", "parse_mechanism", "run_benchmark", "write_outputs"]
