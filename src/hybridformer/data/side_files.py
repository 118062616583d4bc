"""The files that travel beside a checkpoint's weights: ``tokenizer.json`` and ``tokenizer_config.json`` (a
converted instruct model's chat template and special tokens).

They are read once, carried by :class:`~hybridformer.checkpoint.Checkpoint`, and written by the one checkpoint
writer, so a fine-tuned, merged, pruned or longified instruct model still answers ``generate --chat``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from .. import structured
from ..errors import CheckpointError, HybridformerError
from ..filenames import TOKENIZER, TOKENIZER_CONFIG
from .chat import ChatTemplate


def read_tokenizer_config(directory: str | Path, *, error: type[HybridformerError] = CheckpointError) -> dict[str, Any]:
    """``tokenizer_config.json`` of ``directory`` (``{}`` when absent); anything but a JSON object is ``error``."""
    file = Path(directory) / TOKENIZER_CONFIG
    return structured.read(file, mapping=True, error=error) if file.is_file() else {}


def tokenizer_config_beside(tokenizer_file: str | Path | None, **options: Any) -> dict[str, Any]:
    """The ``tokenizer_config.json`` beside a ``tokenizer.json`` (``data.tokenizer`` names the file, not its folder)."""
    return {} if tokenizer_file is None else read_tokenizer_config(Path(tokenizer_file).parent, **options)


def load_tokenizer(directory: str | Path) -> Tokenizer | None:
    """``tokenizer.json`` of ``directory`` (None when absent); a corrupt one is a CheckpointError."""
    file = Path(directory) / TOKENIZER
    if not file.exists():
        return None
    try:
        return Tokenizer.from_str(file.read_text())
    except Exception as exc:  # tokenizers raises plain Exception subclasses
        raise CheckpointError(f"{file}: corrupt tokenizer ({exc})") from None


@dataclass
class SideFiles:
    """A checkpoint's tokenizer and ``tokenizer_config.json``, as one value a writer passes on whole."""

    tokenizer: Tokenizer | None = None
    tokenizer_config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, directory: str | Path) -> SideFiles:
        return cls(load_tokenizer(directory), read_tokenizer_config(directory))

    @property
    def chat_template(self) -> ChatTemplate | None:
        return ChatTemplate.from_config(self.tokenizer_config)

    def write(self, directory: Path) -> None:
        if self.tokenizer is not None:
            (directory / TOKENIZER).write_text(self.tokenizer.to_str())
        if self.tokenizer_config:
            (directory / TOKENIZER_CONFIG).write_text(json.dumps(self.tokenizer_config, indent=2, ensure_ascii=False))
