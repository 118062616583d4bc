"""Benchmarks: measured, never asserted (the numbers go to docs/RESULTS.md)."""
