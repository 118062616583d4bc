"""LoRA adapters (Hu et al., 2021) in the PEFT format: training layers by ``peft``, adapter files, folding."""

from .adapter import ADAPTER_CONFIG, ADAPTER_WEIGHTS, Adapter, adapter_base, is_adapter, read_adapter, write_adapter
from .apply import (
    deltas_for,
    export_hf_with_adapter,
    fold_adapter,
    fold_into,
    is_adapter_only,
    load_with_adapter,
    with_adapter,
)
from .layers import LoraLayers, add_lora, hold_frozen
from .layout import lora_layout

__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "Adapter", "LoraLayers", "adapter_base", "add_lora", "deltas_for",
           "export_hf_with_adapter", "fold_adapter", "fold_into", "hold_frozen", "is_adapter", "is_adapter_only",
           "load_with_adapter", "lora_layout", "read_adapter", "with_adapter", "write_adapter"]
