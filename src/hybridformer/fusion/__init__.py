"""Model fusion: ensemble decoding, checkpoint averaging and weight merging (distillation: :mod:`..train.distill`)."""

from ..decoding import Ensemble, combine_log_probs
from .average import average_checkpoints, last_checkpoints
from .merge import METHODS, MergeOptions, merge_checkpoints
from .merge.adapters import merge_adapters

__all__ = [
    "Ensemble", "combine_log_probs",
    "average_checkpoints", "last_checkpoints", "METHODS", "MergeOptions", "merge_checkpoints",
    "merge_adapters",
]
