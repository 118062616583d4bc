"""Decoding over the Scorer protocol: a single model and an ensemble look the same to the search."""

from .greedy import greedy_search, strip_after_eos
from .scorer import ModelScorer, ModelState, Scorer

__all__ = ["Scorer", "ModelScorer", "ModelState", "greedy_search", "strip_after_eos"]
