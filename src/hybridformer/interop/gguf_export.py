"""``export --to gguf``: a checkpoint of an architecture whose spec declares a GGUF layout (Llama, Mistral,
Qwen2, Qwen3, Gemma 3, LFM2, Granite-4.0-H, Falcon-H1, GPT-2) as a GGUF file llama.cpp and ollama run.

The tensors are those of ``export --to hf`` (:func:`~hybridformer.interop.export.hf_state`) under the
names the ``gguf`` package's tensor map gives them for that architecture, changed as llama.cpp's own
converter changes them (the spec's ``GGUFLayout``: Llama's q/k rows permuted for its RoPE, Gemma's norms
stored as 1 + w, LFM2's conv kernels squeezed, Granite's fused FFN split, GPT-2's ``Conv1D`` weights
transposed); the ``gguf`` package writes the file and quantizes (f16,
Q8_0). The tokenizer goes in as llama.cpp's ``gpt2`` (byte-level BPE) vocabulary: tokens, token types,
merges, special ids and the chat template. What llama.cpp cannot represent (windowed attention outside
Gemma 3's pattern, sinks, our own hybrid layers, RoPE scalings other than linear and YaRN,
SentencePiece-style vocabularies) is refused in one line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import structured
from ..checkpoint import load_config_file
from ..config import ModelConfig
from ..data.side_files import read_tokenizer_config
from ..errors import CheckpointError, ConfigError
from ..filenames import TOKENIZER
from ..outputs import prepare_output_file
from .export import hf_state
from .gguf import gguf_name as layout_name
from .gguf import permute
from .hf import ARCHITECTURES, GGUFLayout

QUANTIZATIONS = ("f32", "f16", "q8_0")


def export_gguf(checkpoint: str | Path, out: str | Path, *, quantization: str = "f32",
                overwrite: bool = False, progress: Callable[[int, int], None] | None = None) -> Path:
    """Write ``checkpoint`` as the GGUF file ``out`` with 2-D weights in ``quantization`` (norms stay f32);
    ``progress(done, total)`` follows the tensors converted."""
    try:
        import gguf
    except ImportError:
        raise ConfigError("export --to gguf needs the gguf package: pip install 'hybridformer[interop]'") from None
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"--quantization for gguf must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    source = Path(checkpoint)
    out = prepare_output_file(out, overwrite=overwrite, inputs=[source])
    cfg = load_config_file(source)
    model_type, _, tensors = hf_state(source)
    layout = ARCHITECTURES[model_type].gguf
    if layout is None:
        writable = sorted(spec.model_type for spec in ARCHITECTURES.values() if spec.gguf is not None)
        raise ConfigError(f"{source}: export --to gguf writes the layouts {', '.join(writable)}; this model's layout "
                          f"is {model_type!r} (export --to hf, then llama.cpp's convert_hf_to_gguf.py)")
    _check(cfg, source, layout)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        _write(gguf.GGUFWriter(str(tmp), layout.name), source, cfg, tensors, quantization, layout,
               progress or (lambda done, total: None))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return out


def _write(writer, source: Path, cfg: ModelConfig, tensors: dict, quantization: str, layout: GGUFLayout,
           progress: Callable[[int, int], None]) -> None:
    import gguf

    qtype = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0}[quantization]
    arch = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == layout.name)
    names = gguf.get_tensor_name_map(arch, cfg.decoder.layers)
    _metadata(writer, cfg, quantization)
    if layout.metadata is not None:
        layout.metadata(writer, cfg)
    _vocabulary(writer, source, cfg)
    for done, (name, tensor) in enumerate(tensors.items(), start=1):
        if layout.permuted_qk and ".q_proj." in name:
            tensor = permute(tensor, cfg.heads)
        elif layout.permuted_qk and ".k_proj." in name:
            tensor = permute(tensor, cfg.num_kv_heads)
        if layout.stored is not None:
            tensor = layout.stored(name, tensor, cfg)
        for gguf_name, block in _named_blocks(name, tensor, names, layout):
            array = block.float().numpy()
            kind = qtype if array.ndim == 2 and (qtype != gguf.GGMLQuantizationType.Q8_0 or array.shape[1] % 32 == 0) \
                else gguf.GGMLQuantizationType.F32  # norms and biases stay f32, as llama.cpp keeps them
            data = gguf.quantize(array, kind) if kind != gguf.GGMLQuantizationType.F32 else array
            writer.add_tensor(gguf_name, data, raw_dtype=kind)
        progress(done, len(tensors))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _named_blocks(name: str, tensor, names, layout: GGUFLayout) -> list[tuple[str, Any]]:
    """llama.cpp's name(s) of HF tensor ``name``: the layout's own, else the ``gguf`` package's tensor map, else the
    Llama ones; a ``fused`` tensor is written as its equal row blocks, each under its own name."""
    module, suffix = name.rsplit(".", 1)
    index, _, rest = module.removeprefix(f"{layout.layers}.").partition(".")
    if rest in layout.fused:
        parts = layout.fused[rest]
        return [(f"blk.{index}.{part}.{suffix}", block)
                for part, block in zip(parts, tensor.chunk(len(parts)), strict=True)]
    gguf_name = (layout_name(name, layout.tensors, layout.layers, defaults=False)
                 or names.get_name(name, try_suffixes=(".weight", ".bias"))
                 or layout_name(name, layout.tensors, layout.layers))
    if gguf_name is None:
        raise ConfigError(f"the gguf package names no {layout.name} tensor for {name}")
    return [(gguf_name, tensor)]


def _check(cfg: ModelConfig, source: Path, layout: GGUFLayout) -> None:
    attention = cfg.decoder.attention
    if (attention.name == "sliding_window" or cfg.decoder.layer_attention) and not layout.local_attention:
        raise ConfigError(f"{source}: llama.cpp's {layout.name} architecture attends to the whole context; a model "
                          f"with {attention.name} attention (windows, sinks) cannot be written as GGUF")
    if cfg.rope_scaling is not None and cfg.rope_scaling.type not in ("linear", "yarn"):
        raise ConfigError(f"{source}: rope_scaling.type={cfg.rope_scaling.type!r} has no GGUF form here "
                          "(linear and yarn do)")


RECURRENT = ("shortconv", "mamba2")  # layers without attention: llama.cpp marks them by 0 key/value heads


def _metadata(writer, cfg: ModelConfig, quantization: str) -> None:
    import gguf

    writer.add_context_length(cfg.max_positions)
    writer.add_embedding_length(cfg.d_model)
    writer.add_block_count(cfg.decoder.layers)
    writer.add_feed_forward_length(cfg.ffn_dim)
    writer.add_head_count(cfg.heads)
    kinds = [cfg.decoder.layer_of(i) for i in range(cfg.decoder.layers)]
    writer.add_head_count_kv([0 if kind in RECURRENT else cfg.num_kv_heads for kind in kinds]
                             if set(kinds) & set(RECURRENT) else cfg.num_kv_heads)  # per layer in LFM2, Granite-H
    if cfg.norm == "layernorm":
        writer.add_layer_norm_eps(cfg.norm_eps)
    else:
        writer.add_layer_norm_rms_eps(cfg.norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_key_length(cfg.attention_head_dim)
    writer.add_value_length(cfg.attention_head_dim)
    if cfg.position == "rope":
        writer.add_rope_freq_base(cfg.rope_base)
        writer.add_rope_dimension_count(cfg.attention_head_dim)
    if cfg.rope_scaling is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType(cfg.rope_scaling.type))
        writer.add_rope_scaling_factor(cfg.rope_scaling.factor)
        writer.add_rope_scaling_orig_ctx_len(cfg.rope_scaling.original_max_positions or cfg.max_positions)
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quantization])


def _vocabulary(writer, source: Path, cfg: ModelConfig) -> None:
    """llama.cpp's ``gpt2`` vocabulary from a byte-level BPE ``tokenizer.json`` (ids kept)."""
    import gguf

    file = source / TOKENIZER
    if not file.is_file():
        raise ConfigError(f"{source}: no tokenizer.json; a GGUF file carries its vocabulary")
    data = structured.read(file, mapping=True, error=CheckpointError)
    model = data.get("model", {})
    if model.get("type") != "BPE" or "ByteLevel" not in json.dumps(data.get("pre_tokenizer")):
        raise ConfigError(f"{source}: export --to gguf writes byte-level BPE vocabularies (GPT-2, Llama 3, Qwen2, "
                          "SmolLM); this tokenizer is not one")
    added = {t["id"]: t for t in data.get("added_tokens", [])}
    tokens = {i: token for token, i in model["vocab"].items()} | {i: t["content"] for i, t in added.items()}
    names, types = [], []
    for i in range(cfg.vocab_size):  # rows past the tokenizer's vocabulary: unused, as llama.cpp pads them
        names.append(tokens.get(i, f"[PAD{i}]"))
        kind = gguf.TokenType.UNUSED if i not in tokens else gguf.TokenType.NORMAL
        if i in added:
            kind = gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED
        types.append(kind)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(names)
    writer.add_token_types(types)
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])])
    writer.add_bos_token_id(cfg.bos_id)
    writer.add_eos_token_id(cfg.eos_id)
    if len(cfg.eos_ids) > 1:  # llama.cpp's end-of-turn id (one; it stops on EOS and EOT)
        writer.add_eot_token_id(cfg.eos_ids[1])
    if cfg.pad_in_vocab:
        writer.add_pad_token_id(cfg.pad_id)
    writer.add_add_bos_token(False)
    template = read_tokenizer_config(source).get("chat_template")
    if isinstance(template, str):
        writer.add_chat_template(template)

