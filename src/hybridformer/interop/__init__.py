"""Interoperability with other toolkits: Hugging Face / GGUF conversion, Hugging Face and CTranslate2 export."""

from .conversion import convert
from .export import export_hf, hf_blockers
from .exporters import export

__all__ = ["convert", "export", "export_hf", "hf_blockers"]
