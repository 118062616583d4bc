"""Hugging Face architectures by ``model_type``: one spec object per architecture (``Architecture``).

Adding an architecture is one file holding its ``Architecture`` and one entry in ``SPECS`` below;
the order matters only for checkpoints that do not name their source type (see ``Architecture``).
"""

from __future__ import annotations

from .bart import BART, MBART
from .bert import BERT, ROBERTA
from .common import Architecture, GGUFLayout
from .falcon_h1 import FALCON_H1
from .gemma3 import GEMMA3
from .gpt2 import GPT2
from .granite import GRANITE_HYBRID
from .lfm2 import LFM2
from .llama import LLAMA, MISTRAL, QWEN2
from .marian import MARIAN
from .phi3 import PHI3
from .qwen3 import QWEN3
from .t5 import T5

SPECS: tuple[Architecture, ...] = (
    LLAMA,
    MISTRAL,
    QWEN2,
    QWEN3,
    GEMMA3,
    PHI3,
    BART,
    MBART,
    MARIAN,
    T5,
    BERT,
    ROBERTA,
    GPT2,
    LFM2,
    GRANITE_HYBRID,
    FALCON_H1,
)
ARCHITECTURES: dict[str, Architecture] = {spec.model_type: spec for spec in SPECS}
GGUF_ARCHITECTURES: dict[str, Architecture] = {}  # a GGUF file's general.architecture -> the first spec writing it
for _spec in SPECS:
    if _spec.gguf is not None:
        GGUF_ARCHITECTURES.setdefault(_spec.gguf.name, _spec)

__all__ = ["ARCHITECTURES", "GGUF_ARCHITECTURES", "SPECS", "Architecture", "GGUFLayout"]
