"""Merging LoRA adapters of one base: each adapter becomes the model ``W + ΔW_i`` (its full update, exact),
and the merge method runs on those tensors exactly as on fine-tuned checkpoints (task vectors = ``ΔW_i``).

The method sees one projection at a time — q, k and v apart even where our model fuses them — so a
method that looks at a whole tensor (ties' and dare's density) treats each projection as ``peft``'s
``add_weighted_adapter`` and Hugging Face models do. Only what some adapter touches is merged; the result
is a plain checkpoint."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ...checkpoint import load_checkpoint, save_checkpoint
from ...errors import ConfigError
from ...lora import adapter_base, deltas_for, lora_layout, read_adapter
from .api import _method, resolve_options


def merge_adapters(adapters: Sequence[str | Path], method: str, out: str | Path, *, base: str | Path | None = None,
                   weights: Sequence[float] | None = None, **options: Any) -> Path:
    """Merge the LoRA ``adapters`` (PEFT directories) of one base model with ``method`` into the checkpoint ``out``.

    ``base`` defaults to the base every adapter names (``base_model_name_or_path``); ``weights`` and ``options``
    are the method's, as in :func:`~hybridformer.fusion.merge_checkpoints`.
    """
    if not adapters:
        raise ConfigError("give at least one adapter to merge (--adapter DIR)")
    bases = {adapter_base(a, base).resolve() for a in adapters}
    if len(bases) > 1:
        raise ConfigError(f"the adapters name different base models ({', '.join(map(str, sorted(bases)))}); "
                          "adapters merge on one base: pass it with --base")
    base_path = bases.pop()
    merger = _method(method)
    resolved = resolve_options(method, len(adapters), base=base_path if merger.needs_base else None,
                               weights=weights, **options)
    ckpt = load_checkpoint(base_path)
    deltas = [deltas_for(ckpt, read_adapter(a)) for a in adapters]
    params = dict(ckpt.model.named_parameters())
    with torch.no_grad():
        for module, parts in lora_layout(ckpt.model, ckpt.config, ckpt.meta).items():
            name = f"{module}.weight"
            if not any(name in delta for delta in deltas):
                continue
            for part in parts:
                weight = params[name][part.start: part.stop].detach().clone()
                models = [weight + delta[name][part.start: part.stop] if name in delta else weight
                          for delta in deltas]
                params[name][part.start: part.stop] = merger.merge(part.name, models, weight, resolved)
    meta = {**ckpt.meta, "method": method, "adapters": [str(a) for a in adapters], **dataclasses.asdict(resolved)}
    return save_checkpoint(out, ckpt.model, ckpt.config, ckpt.side_files, meta=meta)
