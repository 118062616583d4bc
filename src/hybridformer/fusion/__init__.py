"""Model fusion: ensemble decoding, checkpoint averaging and weight merging."""

from .average import average_checkpoints, last_checkpoints
from .ensemble import Ensemble, combine_log_probs, load_scorer, scorer_from_checkpoints
from .merge import METHODS, MergeOptions, merge_checkpoints

__all__ = [
    "Ensemble", "combine_log_probs", "load_scorer", "scorer_from_checkpoints",
    "average_checkpoints", "last_checkpoints", "METHODS", "MergeOptions", "merge_checkpoints",
]
