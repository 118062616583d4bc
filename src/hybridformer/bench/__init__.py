"""Benchmarks: attention scaling (time and peak memory vs length) and their plots."""

from .attention import PointSpec, markdown_table, parse_mechanism, run_benchmark, write_outputs

__all__ = ["PointSpec", "markdown_table", "parse_mechanism", "run_benchmark", "write_outputs"]
