"""Word-level knowledge distillation: match the teacher's next-token distribution at every target position.

Hinton et al. (2015) train a student on the teacher's softened outputs; Kim & Rush (2016,
"Sequence-Level Knowledge Distillation") apply this per target word in NMT and mix it with the
usual label loss:

    L = (1 − α) · label_smoothed_nll + α · T² · Σ_t KL(p_teacher^T(·|y<t, x) ‖ p_student^T(·|y<t, x))

``p^T`` is the softmax at temperature ``T`` (the ``T²`` keeps gradient sizes comparable across
temperatures, as Hinton et al. recommend). The teacher may be an ensemble: its distribution is the
members' distributions combined exactly as ensemble decoding combines them
(:func:`~hybridformer.decoding.combine_log_probs`), so the student imitates the very
distribution the ensemble decodes with. Teachers run in eval mode without gradients, so the loss
is a deterministic function of the batch and the student's weights (exact resume keeps working).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ...decoding import output_log_probs
from ...decoding.ensemble import Combine, combine_log_probs
from ...errors import ConfigError
from ..losses import LabelLoss


def kl_to_teacher(student_logits: Tensor, teacher_log_probs: Tensor, temperature: float = 1.0) -> Tensor:
    """Per-position KL(teacher ‖ student^T): (..., vocab) logits and log-probs -> (...) in float32.

    Tokens the teacher gives probability 0 (e.g. padding, masked out of its outputs) add nothing.
    """
    student = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_p = teacher_log_probs.exp()
    terms = torch.where(teacher_p > 0, teacher_p * (teacher_log_probs - student), torch.zeros_like(student))
    return terms.sum(-1)


def check_word_options(alpha: float, temperature: float) -> None:
    """Word-level KD's two numbers; NaN or infinity would train to NaN and still exit 0."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"--alpha must be in [0, 1] (0 = label loss only, 1 = KL only), got {alpha}")
    if not 0.0 < temperature < math.inf:
        raise ConfigError(f"--temperature must be a finite number > 0, got {temperature}")


class WordDistillLoss:
    """The trainer's :class:`~hybridformer.train.losses.TrainLoss` for word-level KD from one or more teachers.

    ``alpha`` weighs the KL term (0 = plain label loss, 1 = pure distillation); ``weights`` and
    ``combine`` fuse several teachers as in :class:`~hybridformer.fusion.Ensemble`. Logs ``kl``
    (nats per target token, at ``temperature``) beside the loss.
    """

    def __init__(self, teachers: Sequence[nn.Module], *, alpha: float = 0.5, temperature: float = 1.0,
                 weights: Sequence[float] | None = None, combine: Combine = "prob", pad_id: int = 0) -> None:
        if not teachers:
            raise ConfigError("distillation needs at least one teacher")
        check_word_options(alpha, temperature)
        if combine not in ("prob", "log_prob"):
            raise ConfigError(f"--combine must be 'prob' or 'log_prob', got {combine!r}")
        weights = [1.0] * len(teachers) if weights is None else [float(w) for w in weights]
        if len(weights) != len(teachers) or not all(0 <= w < math.inf for w in weights) or sum(weights) <= 0:
            raise ConfigError(f"teacher weights {weights}: give one weight >= 0 per teacher ({len(teachers)}), "
                              "with a positive sum")
        self.teachers = [t.eval().requires_grad_(False) for t in teachers]
        self.weights = [w / sum(weights) for w in weights]
        self.alpha, self.temperature, self.combine, self.pad_id = alpha, temperature, combine, pad_id

    @torch.no_grad()
    def teacher_log_probs(self, batch: dict[str, Tensor], keep: Tensor, dtype: torch.dtype = torch.float32,
                          ) -> Tensor:
        """The (ensembled) teacher's log-probs at the kept target positions: (n_kept, vocab).

        ``dtype``: the student's compute precision; a bf16 student (``train.precision: bf16``) runs its
        teachers under the same autocast, so they are not the slowest part of a step.
        """
        per_teacher = []
        device = batch["tgt_in"].device
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
        for index, teacher in enumerate(self.teachers):
            if next(teacher.parameters()).device != device:
                self.teachers[index] = teacher = teacher.to(device)
            with autocast:
                logits = teacher(batch["src"], batch["tgt_in"]) if "src" in batch else teacher(batch["tgt_in"])
            per_teacher.append(output_log_probs(logits[keep] / self.temperature, self.pad_id))
        return combine_log_probs(torch.stack(per_teacher), self.weights, self.combine)

    def __call__(self, logits: Tensor, batch: dict[str, Tensor], label_loss: LabelLoss,
                 ) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
        loss_sum, nll_sum, count = label_loss(logits)
        if self.alpha == 0.0:
            return loss_sum, nll_sum, count, {}
        keep = batch["tgt_out"].ne(self.pad_id)
        teacher = self.teacher_log_probs(batch, keep, logits.dtype)
        kl_sum = kl_to_teacher(logits[keep], teacher, self.temperature).sum()
        mixed = (1.0 - self.alpha) * loss_sum + self.alpha * self.temperature ** 2 * kl_sum
        return mixed, nll_sum, count, {"kl": kl_sum.detach()}
