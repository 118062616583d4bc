"""``export --to hf``: a checkpoint whose layers Hugging Face can represent -> a transformers model folder.

The tensor rules of the conversion run backwards (split fused q/k/v and gate/up projections), so a
Hugging Face -> hybridformer -> Hugging Face round trip gives identical tensors. A checkpoint with
hybrid layers (convolutions, sparse or linear attention, DeepNet/ReZero residuals, pruned heads,
int8 weights) has no Hugging Face equivalent and is refused with the list of what stands in the way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..checkpoint import load_checkpoint, load_config_file, load_meta, write_checkpoint_dir
from ..config import ModelConfig
from ..data.side_files import SideFiles
from ..errors import ConfigError
from ..filenames import CONFIG, GENERATION_CONFIG, WEIGHTS
from ..outputs import prepare_output_dir
from ..tensorfile import DTYPE_NAMES, write_safetensors
from .hf import ARCHITECTURES, SPECS, Architecture
from .hf.roundtrip import layout_blockers


def blockers(cfg: ModelConfig, arch: Architecture) -> list[str]:
    """What in ``cfg`` the HF class of ``arch`` cannot represent (empty: exportable)."""
    if arch.export_blockers is not None:
        return arch.export_blockers(cfg)
    try:
        return layout_blockers(cfg, arch)
    except (KeyError, ValueError, ConfigError) as exc:  # a setting the type has no name for (an activation, a field)
        return [f"{arch.model_type} cannot hold this model ({exc})"]


def export_architecture(cfg: ModelConfig, meta: dict[str, Any]) -> Architecture:
    """The architecture to write: the source's when converted, else the first that adopts or claims ``cfg``
    (a model made here, or a fine-tune of a converted model, whose meta.json the trainer wrote)."""
    if meta.get("model_type") in ARCHITECTURES:
        return ARCHITECTURES[meta["model_type"]]
    claimed = next(arch for arch in SPECS if arch.claims is not None and arch.claims(cfg))
    if not blockers(cfg, claimed):  # a Llama layout exports as Llama (Granite-H's layout also admits one)
        return claimed
    return next((arch for arch in SPECS if arch.adopts and not blockers(cfg, arch)), claimed)


def hf_blockers(cfg: ModelConfig, meta: dict[str, Any] | None = None) -> list[str]:
    """What stands in the way of exporting ``cfg`` to Hugging Face (empty: exportable)."""
    return blockers(cfg, export_architecture(cfg, meta or {}))


def hf_state(source: Path, weights: dict[str, Any] | None = None) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(model_type, config.json dict, tensors)`` of ``source`` in Hugging Face naming and layout, or a
    ConfigError listing what Hugging Face cannot represent (what ``export --to hf`` and ``--to gguf`` write).
    ``weights`` replace the checkpoint's own (its model with a LoRA adapter folded in)."""
    cfg = load_config_file(source)
    arch = export_architecture(cfg, load_meta(source))
    problems = blockers(cfg, arch)
    if problems:
        raise ConfigError(f"{source}: cannot export to Hugging Face: {'; '.join(problems)}")
    ours = dict(weights) if weights is not None else load_checkpoint(source).model.state_dict()  # tied resolved
    tensors = {}
    for rule in arch.rules(cfg):
        tensors.update(rule.split(ours[rule.ours]))
    config = {**arch.hf_config(cfg), "architectures": [arch.hf_class], "torch_dtype": "float32"}
    return arch.model_type, config, tensors


def export_hf(checkpoint: str | Path, out: str | Path, *, overwrite: bool = False,
              weights: dict[str, Any] | None = None, write_extra: Callable[[Path], None] | None = None,
              progress: Callable[[int, int], None] | None = None) -> Path:
    """Write ``checkpoint`` as a Hugging Face model folder (config.json, model.safetensors, tokenizer files).

    ``weights`` replace the checkpoint's own (see :func:`hf_state`); ``write_extra(tmp)`` adds files to the
    same atomic write (the adapter beside the base); ``progress(done, total)`` follows the tensors written."""
    source = Path(checkpoint)
    out = prepare_output_dir(out, overwrite=overwrite, inputs=[source])
    _, config, tensors = hf_state(source, weights)
    cfg = load_config_file(source)
    # transformers feeds pad back in after EOS: a pad outside the vocabulary (GPT-2) becomes EOS, its convention
    pad = cfg.pad_id if cfg.pad_in_vocab else cfg.eos_id
    eos = cfg.eos_ids if len(cfg.eos_ids) > 1 else cfg.eos_id  # transformers stops on any id of a list
    generation = {"bos_token_id": cfg.bos_id, "eos_token_id": eos, "pad_token_id": pad}
    if cfg.is_seq2seq:
        generation["decoder_start_token_id"] = cfg.start_id

    def fill(tmp: Path) -> None:
        specs = {name: (DTYPE_NAMES[tensor.dtype], tuple(tensor.shape)) for name, tensor in tensors.items()}
        write_safetensors(tmp / WEIGHTS, specs, tensors.__getitem__, progress=progress)
        (tmp / CONFIG).write_text(json.dumps(config, indent=2))
        (tmp / GENERATION_CONFIG).write_text(json.dumps(generation, indent=2))
        SideFiles.read(source).write(tmp)
        if write_extra is not None:
            write_extra(tmp)

    return write_checkpoint_dir(out, fill)
