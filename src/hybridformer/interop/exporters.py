"""``export --to hf|ct2|gguf``: one front door over the exporters, kept apart from them so that one exporter
may build on another (GGUF on the HF tensors of :mod:`.export`) without an import cycle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .export import export_hf

EXPORTERS = {"hf": export_hf}


def export(checkpoint: str | Path, out: str | Path, *, to: str = "hf", overwrite: bool = False,
           progress: Callable[[int, int], None] | None = None, **options: Any) -> Path:
    """Export ``checkpoint`` to another toolkit's format: ``hf`` (transformers), ``ct2`` (CTranslate2) or
    ``gguf`` (llama.cpp; ``out`` is a file). ``progress(done, total)`` follows the tensors (ct2: the steps)."""
    if to == "ct2":
        from .ct2 import export_ct2

        return export_ct2(checkpoint, out, overwrite=overwrite, progress=progress, **options)
    if to == "gguf":
        from .gguf_export import export_gguf

        if set(options) - {"quantization"}:
            raise ConfigError(f"export --to gguf: option(s) {', '.join(sorted(options))} do not apply")
        return export_gguf(checkpoint, out, overwrite=overwrite, progress=progress, **options)
    if to not in EXPORTERS:
        raise ConfigError(f"export --to {to!r} is not supported; choose hf, ct2 or gguf")
    if options:
        raise ConfigError(f"export --to {to}: option(s) {', '.join(options)} apply to ct2 and gguf only")
    return EXPORTERS[to](checkpoint, out, overwrite=overwrite, progress=progress)
