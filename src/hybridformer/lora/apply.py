"""Adapters in: fold an adapter into its base model (``--adapter DIR``), or write the sum as a plain checkpoint."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..checkpoint import WEIGHTS, Checkpoint, load_checkpoint, save_checkpoint
from ..errors import ConfigError
from ..outputs import prepare_output_dir
from .adapter import ADAPTER_CONFIG, ADAPTER_WEIGHTS, Adapter, adapter_base, is_adapter, read_adapter, weight_deltas
from .layout import lora_layout


def deltas_for(ckpt: Checkpoint, adapter: Adapter) -> dict[str, torch.Tensor]:
    """The adapter's full ``ΔW`` per weight of ``ckpt``'s model (checked against its names and shapes)."""
    shapes = {name: p.shape for name, p in ckpt.model.named_parameters()}
    return weight_deltas(adapter, lora_layout(ckpt.model, ckpt.config, ckpt.meta), shapes)


@torch.no_grad()
def fold_into(ckpt: Checkpoint, adapter: Adapter) -> Checkpoint:
    """``W += ΔW`` for every weight the adapter adapts, in place; inference then runs at the base's speed."""
    params = dict(ckpt.model.named_parameters())
    for name, delta in deltas_for(ckpt, adapter).items():
        params[name].add_(delta.to(params[name]))
    return ckpt


def load_with_adapter(checkpoint: str | Path | None, adapter: str | Path,
                      device: str | torch.device = "cpu") -> Checkpoint:
    """The base checkpoint (default: the one the adapter names) with the adapter folded in."""
    return fold_into(load_checkpoint(adapter_base(adapter, checkpoint), device), read_adapter(adapter))


def with_adapter(checkpoints: Sequence[str | Path | Checkpoint], adapter: str | Path | None,
                 device: str | torch.device = "cpu") -> list[str | Path | Checkpoint]:
    """What generate/evaluate/serve run: the checkpoints as given, the one checkpoint with ``adapter`` folded
    in, and any adapter directory (a LoRA run's ``checkpoints/best``) on the base it names."""
    if adapter is not None:
        if len(checkpoints) != 1:
            raise ConfigError(f"--adapter applies to one base checkpoint, got {len(checkpoints)}")
        base = checkpoints[0]
        if isinstance(base, Checkpoint):
            return [fold_into(base, read_adapter(adapter))]
        return [load_with_adapter(base, adapter, device)]
    return [load_with_adapter(None, item, device) if not isinstance(item, Checkpoint) and is_adapter_only(item)
            else item for item in checkpoints]


def is_adapter_only(path: str | Path) -> bool:
    return is_adapter(path) and not (Path(path) / WEIGHTS).exists()


def fold_adapter(adapter: str | Path, out: str | Path, *, base: str | Path | None = None,
                 overwrite: bool = False) -> Path:
    """``merge --fold``: base + adapter written as a plain checkpoint (no adapter needed to run it)."""
    base = adapter_base(adapter, base)
    out = prepare_output_dir(out, overwrite=overwrite, inputs=[base, Path(adapter)])
    ckpt = load_with_adapter(base, adapter)
    return save_checkpoint(out, ckpt.model, ckpt.config, ckpt.side_files, meta=ckpt.meta)


def export_hf_with_adapter(checkpoint: str | Path | None, adapter: str | Path, out: str | Path, *,
                           merged: bool = False, overwrite: bool = False,
                           progress: Callable[[int, int], None] | None = None) -> Path:
    """``export --to hf --adapter``: the base as a transformers folder with the adapter in ``OUT/adapter``
    (naming ``OUT`` as its base, so ``PeftModel.from_pretrained`` or transformers' own adapter loading find
    it), or with ``merged`` one folder holding base + adapter folded. ``progress`` as in ``export_hf``."""
    from ..interop.export import export_hf

    base = adapter_base(adapter, checkpoint)
    if merged:
        ckpt = load_with_adapter(base, adapter)
        return export_hf(base, out, overwrite=overwrite, weights=ckpt.model.state_dict(), progress=progress)
    final = Path(out).resolve()

    def write(tmp: Path) -> None:
        folder = tmp / "adapter"
        folder.mkdir()
        for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
            shutil.copyfile(Path(adapter) / name, folder / name)
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
        (folder / ADAPTER_CONFIG).write_text(json.dumps({**config, "base_model_name_or_path": str(final)}, indent=2))

    return export_hf(base, out, overwrite=overwrite, write_extra=write, progress=progress)
