"""Interoperability with other toolkits: Hugging Face / GGUF conversion, Hugging Face and CTranslate2 export."""

from .conversion import convert

__all__ = ["convert"]
