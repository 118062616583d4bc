"""``prune_checkpoint`` / ``quantize_checkpoint``: checkpoint in, compressed checkpoint out.

What ``hybridformer prune`` and ``hybridformer quantize`` do, as functions: load, compress, save
with the compression recorded in ``meta.json`` (``"compression"``: one note per step, appended by
:func:`compression_meta`, the one place that writes it), and report the sizes before and after.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ..errors import ConfigError
from ..outputs import prepare_output_dir
from .data import check_batching, text_batches
from .heads import head_importance, weight_importance
from .magnitude import magnitude_prune, sparsity
from .prune import head_counts, prune_heads
from .quantize import SCHEMES, check_scheme, quantize_model


@dataclass
class CompressResult:
    """The written checkpoint, the note recorded in its ``meta.json``, and the saved state's size."""

    path: Path
    note: dict[str, Any]
    numel: tuple[int, int]  # elements before, after
    size_bytes: tuple[int, int]  # bytes before, after
    heads_left: int | None = None  # head pruning: query heads left in the model


def state_size(model: nn.Module) -> tuple[int, int]:
    """Elements and bytes of the saved state (tied tensors counted once): what a checkpoint holds."""
    unique = {t.data_ptr(): t for t in model.state_dict().values() if t.numel()}
    return sum(t.numel() for t in unique.values()), sum(t.numel() * t.element_size() for t in unique.values())


def compression_meta(meta: dict[str, Any], source: str | Path, note: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with ``note`` (and where the model came from) appended to its ``compression`` list."""
    return {**meta, "compression": [*meta.get("compression", []), {**note, "source": str(source)}]}


def prune_checkpoint(
    checkpoint: str | Path, out: str | Path, *, heads: float | None = None, sparsity_target: float | None = None,
    data: Sequence[str | Path] = (), scope: str = "global", max_examples: int = 512, batch_size: int = 32,
    overwrite: bool = False,
) -> CompressResult:
    """Remove the fraction ``heads`` of attention heads (structured), or zero the fraction
    ``sparsity_target`` of linear weights (unstructured), and save the result to ``out``.

    Heads are ranked by Michel et al.'s gradient importance on held-out ``data`` (source and target
    files for seq2seq, one text file for an LM); without data, by each head's output-projection norm.
    """
    if (heads is None) == (sparsity_target is None):
        raise ConfigError("give exactly one of --heads FRACTION or --sparsity FRACTION")
    check_batching(max_examples, batch_size)
    prepare_output_dir(out, overwrite=overwrite, inputs=[checkpoint, *data])
    ckpt = load_checkpoint(checkpoint)
    model, config = ckpt.model, ckpt.config
    if config.quantization is not None:
        raise ConfigError(f"{checkpoint} is quantized; prune the float checkpoint, then quantize")
    before = state_size(model)
    heads_left = None
    if heads is not None:
        if data:
            batches = text_batches(_tokenizer(ckpt), config, [Path(p) for p in data], max_examples=max_examples,
                                   batch_size=batch_size)
            importance, method = head_importance(model, batches), "gradient"
        else:
            importance, method = weight_importance(model), "weight_norm"
        config = prune_heads(model, config, heads, importance)
        heads_left = sum(head_counts(model).values())
        note = {"method": "heads", "fraction": heads, "importance": method, "heads_left": heads_left}
    else:
        magnitude_prune(model, sparsity_target, scope=scope)
        note = {"method": "magnitude", "sparsity": round(sparsity(model), 6), "scope": scope}
    after = state_size(model)
    path = save_checkpoint(out, model, config, ckpt.side_files, meta=compression_meta(ckpt.meta, checkpoint, note))
    return CompressResult(path, note, (before[0], after[0]), (before[1], after[1]), heads_left)


def quantize_checkpoint(checkpoint: str | Path, out: str | Path, *, scheme: str = "int8",
                        calibrate: Sequence[str | Path] = (), alpha: float = 0.5, max_examples: int = 512,
                        overwrite: bool = False) -> CompressResult:
    """Store the linear layers of a float checkpoint as ``scheme`` (int8: dynamic, per channel; int4:
    groups of 32; bf16) and save it to ``out``. ``calibrate``: text (one file for an LM, source and
    target for seq2seq) that SmoothQuant measures the activations on before dynamic int8."""
    check_scheme(scheme, calibrated=bool(calibrate), alpha=alpha)
    check_batching(max_examples, 1)
    prepare_output_dir(out, overwrite=overwrite, inputs=[checkpoint, *calibrate])
    ckpt = load_checkpoint(checkpoint)
    before = state_size(ckpt.model)
    note = {"method": SCHEMES[scheme]}
    batches = None
    if calibrate:
        batches = text_batches(_tokenizer(ckpt, "--calibrate text"), ckpt.config, [Path(p) for p in calibrate],
                               max_examples=max_examples, batch_size=8, purpose="calibration")
        note["smoothquant"] = {"alpha": alpha, "calibration": [str(p) for p in calibrate]}
    model, config = quantize_model(ckpt.model, ckpt.config, scheme, calibration=batches, alpha=alpha)
    after = state_size(model)
    path = save_checkpoint(out, model, config, ckpt.side_files, meta=compression_meta(ckpt.meta, checkpoint, note))
    return CompressResult(path, note, (before[0], after[0]), (before[1], after[1]))


def _tokenizer(ckpt: Checkpoint, what: str = "--data text for head importance"):
    if ckpt.tokenizer is None:
        raise ConfigError(f"{ckpt.path} has no tokenizer.json; cannot read {what}")
    return ckpt.tokenizer
