"""Knowledge distillation: a student trained on one teacher's or an ensemble's predictions, word- or
sequence-level, inside the normal trainer."""

from .kd_loss import WordDistillLoss, kl_to_teacher
from .run import distill

__all__ = ["distill", "WordDistillLoss", "kl_to_teacher"]
