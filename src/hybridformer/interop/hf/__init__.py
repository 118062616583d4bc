"""Hugging Face architectures by ``model_type``: a plain dict of small per-architecture mappings."""

from __future__ import annotations

from .bart import BART, MBART
from .bert import BERT, ROBERTA
from .common import Architecture
from .gpt2 import GPT2
from .granite import GRANITE_HYBRID
from .lfm2 import LFM2
from .llama import LLAMA, MISTRAL, QWEN2
from .marian import MARIAN
from .t5 import T5

ARCHITECTURES: dict[str, Architecture] = {
    "llama": LLAMA,
    "mistral": MISTRAL,
    "qwen2": QWEN2,
    "bart": BART,
    "mbart": MBART,
    "marian": MARIAN,
    "t5": T5,
    "bert": BERT,
    "roberta": ROBERTA,
    "gpt2": GPT2,
    "lfm2": LFM2,
    "granitemoehybrid": GRANITE_HYBRID,
}

__all__ = ["ARCHITECTURES", "Architecture"]
