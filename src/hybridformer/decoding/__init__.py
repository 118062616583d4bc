"""Decoding over the Scorer protocol: a single model and an ensemble look the same to the search."""

from .beam import Hypothesis, beam_search
from .generate import Decoder, GenerationOptions, generate, load_decoder
from .greedy import greedy_search, strip_after_eos, token_loop
from .sampling import sample_search, sample_tokens
from .scorer import ModelScorer, ModelState, Scorer, output_log_probs

__all__ = [
    "Scorer", "ModelScorer", "ModelState", "output_log_probs", "greedy_search", "strip_after_eos", "token_loop",
    "beam_search", "Hypothesis", "sample_search", "sample_tokens",
    "generate", "load_decoder", "Decoder", "GenerationOptions",
]
