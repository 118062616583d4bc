"""Decoding over the Scorer protocol: a single model and an ensemble look the same to the search.

Only the protocol, its two implementations (:class:`ModelScorer`, :class:`Ensemble`) and the
searches live here; loading checkpoints is :mod:`hybridformer.inference`, and turning lines of
text into outputs is :mod:`hybridformer.generation`.
"""

from .beam import Hypothesis, beam_search
from .ensemble import Ensemble, combine_log_probs
from .greedy import greedy_search, strip_after_eos, token_loop
from .sampling import sample_search, sample_tokens
from .scorer import ModelScorer, ModelState, Scorer, output_log_probs

__all__ = [
    "Scorer", "ModelScorer", "ModelState", "output_log_probs", "greedy_search", "strip_after_eos", "token_loop",
    "beam_search", "Hypothesis", "sample_search", "sample_tokens", "Ensemble", "combine_log_probs",
]
