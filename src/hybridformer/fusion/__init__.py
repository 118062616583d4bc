"""Model fusion: ensemble decoding, checkpoint averaging, weight merging and distillation."""

from ..decoding import Ensemble, combine_log_probs
from .average import average_checkpoints, last_checkpoints
from .distill import distill
from .kd_loss import WordDistillLoss, kl_to_teacher
from .merge import METHODS, MergeOptions, merge_checkpoints
from .merge.adapters import merge_adapters

__all__ = [
    "Ensemble", "combine_log_probs",
    "average_checkpoints", "last_checkpoints", "METHODS", "MergeOptions", "merge_checkpoints",
    "merge_adapters",
    "distill", "WordDistillLoss", "kl_to_teacher",
]
