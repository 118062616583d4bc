"""Which converted encoder-decoders and encoders can go back to Hugging Face (``export --to hf``).

BART, mBART, Marian, T5, BERT and RoBERTa have one fixed layout each, so the test is a round trip:
the architecture's ``config.json`` of the checkpoint, read back by its own ``model_config``, must give
the checkpoint's config again. Any option Hugging Face cannot hold (a convolution layer, another
attention kernel, a per-layer override, a rope position, pruned heads, a classification head on a
sentence encoder ...) then shows up as a differing field, named in the refusal.
"""

from __future__ import annotations

from ...config import ModelConfig
from .common import Architecture

# may differ without changing the computation HF would do (or are carried outside config.json)
IGNORED = {"dropout", "bos_id", "eos_id", "extra_eos_ids", "pad_id", "decoder_start_id"}


def layout_blockers(cfg: ModelConfig, arch: Architecture) -> list[str]:
    """The fields of ``cfg`` that ``arch``'s Hugging Face config cannot reproduce (empty: exportable)."""
    data = arch.model_config(arch.hf_config(cfg))
    data = {key: value for key, value in data.items() if value is not None}
    if arch.head is not None:
        data["tie_embeddings"] = cfg.tie_embeddings
    expected = ModelConfig(**{**data, **{key: getattr(cfg, key) for key in IGNORED}}).model_dump()
    actual = cfg.model_dump()
    return [f"{key}={actual[key]!r}" for key in actual if key not in IGNORED and actual[key] != expected[key]]
