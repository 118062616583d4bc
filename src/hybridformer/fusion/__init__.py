"""Model fusion: ensemble decoding, checkpoint averaging, weight merging and distillation."""

from .average import average_checkpoints, last_checkpoints
from .distill import distill
from .ensemble import Ensemble, combine_log_probs, load_scorer, scorer_from_checkpoints
from .kd_loss import WordDistillLoss, kl_to_teacher
from .merge import METHODS, MergeOptions, merge_checkpoints

__all__ = [
    "Ensemble", "combine_log_probs", "load_scorer", "scorer_from_checkpoints",
    "average_checkpoints", "last_checkpoints", "METHODS", "MergeOptions", "merge_checkpoints",
    "distill", "WordDistillLoss", "kl_to_teacher",
]
