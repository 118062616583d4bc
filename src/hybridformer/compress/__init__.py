"""Model compression: attention-head pruning, magnitude pruning, int8 / int4 / bf16 linear weights.

See docs/compression.md. Pruned and quantized models are described by their ``ModelConfig``
(``pruned_heads``, ``quantization``), so their checkpoints load with ``load_checkpoint``.
"""

from ..attention.head_subset import apply_pruned_heads, attention_modules, keep_heads
from ..quantized import (
    FORMATS,
    BF16Linear,
    Int4Linear,
    Int8Linear,
    Int8WeightLinear,
    quantize_dynamic_int8,
    quantize_linears,
)
from .api import CompressResult, compression_meta, prune_checkpoint, quantize_checkpoint, state_size
from .heads import HeadGates, batch_loss, head_importance, weight_importance
from .magnitude import (
    iterative_magnitude_prune,
    magnitude_masks,
    magnitude_prune,
    make_permanent,
    sparsity,
    sparsity_schedule,
)
from .prune import head_counts, prune_heads, select_heads
from .quantize import SCHEMES, quantize_model

__all__ = [
    "CompressResult", "compression_meta", "prune_checkpoint", "quantize_checkpoint", "state_size",
    "HeadGates", "attention_modules", "batch_loss", "head_importance", "weight_importance",
    "apply_pruned_heads", "head_counts", "keep_heads", "prune_heads", "select_heads",
    "magnitude_masks", "magnitude_prune", "make_permanent", "sparsity", "sparsity_schedule",
    "iterative_magnitude_prune", "FORMATS", "SCHEMES", "BF16Linear", "Int4Linear", "Int8Linear", "Int8WeightLinear",
    "quantize_dynamic_int8", "quantize_linears", "quantize_model",
]
