"""GGUF files (llama.cpp) as a lazy tensor source in Hugging Face naming and layout.

Tensors are dequantized to float32 one at a time with the ``gguf`` package (the file is memory
mapped, so nothing else is read). llama.cpp's converter permutes the rows of the Llama q and k
projections (its RoPE pairs adjacent channels, HF's ``rotate_half`` pairs the two halves); that
permutation is undone here, exactly as transformers' GGUF loader does. The metadata becomes an HF
config.json dict, so each architecture's mapping in ``hf/`` serves both sources; what differs per
architecture (its name, extra tensors and metadata, the converter's changes) is its spec's ``gguf``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import CheckpointError, ConfigError
from .folder import require_float
from .hf import GGUF_ARCHITECTURES

_LAYER = {
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}
_GLOBAL = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
           "output.weight": "lm_head.weight"}
_BLOCK = re.compile(r"blk\.(\d+)\.(.+)")
_KIND = re.compile(r"(.+)\.(weight|bias)")


def hf_name(name: str, extra: dict[str, str] | None = None, layers: str = "model.layers") -> str:
    """``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight`` (unknown names stay as they are);
    ``extra`` adds an architecture's own names: per layer, a module (``attn_q_norm``) or a whole tensor
    (``ssm_a`` -> ``mamba.A_log``), or a global tensor (``token_embd_norm.weight``); ``layers`` is the HF prefix of
    the layers (GPT-2: ``transformer.h``)."""
    extra = extra or {}
    if name in _GLOBAL or name in extra:
        return extra.get(name) or _GLOBAL[name]
    block = _BLOCK.fullmatch(name)
    if block is None:
        return name
    index, rest = block.groups()
    if rest in extra:
        return f"{layers}.{index}.{extra[rest]}"
    module = _KIND.fullmatch(rest)
    layer = _LAYER | extra
    if module is None or module.group(1) not in layer:
        return name
    return f"{layers}.{index}.{layer[module.group(1)]}.{module.group(2)}"


def gguf_name(name: str, extra: dict[str, str] | None = None, layers: str = "model.layers",
              defaults: bool = True) -> str | None:
    """The inverse of :func:`hf_name` (None for a name it does not produce; with ``defaults=False`` only for the
    names ``extra`` declares). The export asks it first for a layout's own names (llama.cpp's converter renames some
    tensors off the ``gguf`` package's map: Granite's dense FFN, Falcon-H1's ``pre_ff_layernorm``)."""
    extra = extra or {}
    whole = {hf: gg for gg, hf in ((_GLOBAL if defaults else {}) | extra).items()}
    if name in whole:
        return whole[name]
    match = re.fullmatch(rf"{re.escape(layers)}\.(\d+)\.(.+)", name)
    if match is None:
        return None
    index, rest = match.groups()
    if rest in whole:
        return f"blk.{index}.{whole[rest]}"
    module = _KIND.fullmatch(rest)
    layer = {hf: gg for gg, hf in ((_LAYER if defaults else {}) | extra).items()}
    if module is None or module.group(1) not in layer:
        return None
    return f"blk.{index}.{layer[module.group(1)]}.{module.group(2)}"


def permute(weight: Tensor, heads: int) -> Tensor:
    """llama.cpp's ``permute(w, n_head)`` (the inverse of :func:`unpermute`): its RoPE pairs adjacent channels."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def unpermute(weight: Tensor, heads: int) -> Tensor:
    """Undo llama.cpp's ``permute(w, n_head)``: rows (heads, 2, d/2) interleaved back to (heads, d/2 · 2) halves."""
    rows = weight.shape[0]
    return weight.reshape(heads, rows // heads // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


class GGUFFile:
    """``config`` (an HF config.json dict), ``keys()`` and ``get(name)`` (float32, HF layout)."""

    def __init__(self, path: Path) -> None:
        try:
            from gguf import GGUFReader
        except ImportError:
            raise ConfigError("reading GGUF needs the gguf package: pip install 'hybridformer[interop]'") from None
        try:
            self.reader = GGUFReader(str(path))
        except Exception as exc:  # the reader raises ValueError, struct errors, ... on a damaged file
            raise CheckpointError(f"{path}: not a readable GGUF file ({type(exc).__name__}: {exc})") from None
        self.path = path
        arch = self.field("general.architecture")
        if arch not in GGUF_ARCHITECTURES:
            raise ConfigError(f"{path}: GGUF general.architecture={arch!r} is not supported; supported: "
                              f"{', '.join(GGUF_ARCHITECTURES)}")
        self.arch, self.spec = arch, GGUF_ARCHITECTURES[arch]
        self.layout = self.spec.gguf
        self._tensors = self._by_hf_name()
        self.config = self._config()

    def _by_hf_name(self) -> dict[str, list]:
        """HF name -> the GGUF tensors it is made of: one, or the row blocks of a tensor llama.cpp splits (the
        layout's ``fused``: Granite's gate and up projections), in their order."""
        extra = self.layout.tensors | {part: hf for hf, parts in self.layout.fused.items() for part in parts}
        tensors: dict[str, list] = {}
        for tensor in sorted(self.reader.tensors, key=self._block_index):
            tensors.setdefault(hf_name(tensor.name, extra, self.layout.layers), []).append(tensor)
        return tensors

    def _block_index(self, tensor) -> int:
        """Where a split tensor's block goes in the HF tensor (0 for every other tensor)."""
        block = _BLOCK.fullmatch(tensor.name)
        module = _KIND.fullmatch(block.group(2)) if block else None
        return next((parts.index(module.group(1)) for parts in self.layout.fused.values()
                     if module and module.group(1) in parts), 0)

    def field(self, key: str, default: Any = None) -> Any:
        field = self.reader.fields.get(key)
        return default if field is None else field.contents()

    def _config(self) -> dict[str, Any]:
        a = self.arch
        heads = self.field(f"{a}.attention.head_count")
        config: dict[str, Any] = {
            "model_type": self.spec.model_type, "hidden_size": self.field(f"{a}.embedding_length"),
            "intermediate_size": self.field(f"{a}.feed_forward_length"),
            "num_hidden_layers": self.field(f"{a}.block_count"), "num_attention_heads": heads,
            "num_key_value_heads": self.field(f"{a}.attention.head_count_kv", heads),
            "rms_norm_eps": self.field(f"{a}.attention.layer_norm_rms_epsilon", 1e-5),
            "rope_theta": self.field(f"{a}.rope.freq_base", 10000.0),
            "max_position_embeddings": self.field(f"{a}.context_length", 2048),
            "vocab_size": self.field(f"{a}.vocab_size") or len(self.field("tokenizer.ggml.tokens", []))
            or self._tensors[hf_name("token_embd.weight", self.layout.tensors)][0].shape[-1],
            "tie_word_embeddings": "lm_head.weight" not in self._tensors,
            "bos_token_id": self.field("tokenizer.ggml.bos_token_id"),
            "eos_token_id": [i for key in ("eos", "eot", "eom") if (i := self.field(f"tokenizer.ggml.{key}_token_id"))
                             is not None],  # llama.cpp's end-of-turn/message ids end generation too
            "pad_token_id": self.field("tokenizer.ggml.padding_token_id"),
            "hidden_act": "silu",  # llama.cpp records biases only as tensors:
            "attention_bias": "model.layers.0.self_attn.o_proj.bias" in self._tensors,
            "mlp_bias": "model.layers.0.mlp.up_proj.bias" in self._tensors,
        }
        key_length = self.field(f"{a}.attention.key_length")
        if key_length is not None:
            config["head_dim"] = key_length
        rope_dims = self.field(f"{a}.rope.dimension_count")
        if rope_dims is not None and rope_dims != (key_length or config["hidden_size"] // heads):
            raise ConfigError(f"{self.path}: {a}.rope.dimension_count={rope_dims} (RoPE on part of each head) "
                              "is not supported")
        kind = self.field(f"{a}.rope.scaling.type")
        if kind not in (None, "none"):
            if kind not in ("linear", "yarn"):
                raise ConfigError(f"{self.path}: {a}.rope.scaling.type={kind!r} is not supported (linear, yarn)")
            config["rope_scaling"] = {"rope_type": kind, "factor": self.field(f"{a}.rope.scaling.factor"),
                                      "original_max_position_embeddings":
                                          self.field(f"{a}.rope.scaling.original_context_length")}
        if self.layout.config is not None:
            config.update(self.layout.config(lambda key: self.field(f"{a}.{key}"), set(self._tensors)))
        return config

    def keys(self) -> set[str]:
        return set(self._tensors)

    def get(self, name: str) -> Tensor:
        from gguf import dequantize

        self._require_float(name)
        blocks = []
        for tensor in self._tensors[name]:
            try:
                array = dequantize(tensor.data, tensor.tensor_type)
            except Exception as exc:  # an unknown quantization type or truncated data
                raise CheckpointError(f"{self.path}: cannot dequantize {tensor.name} "
                                      f"({tensor.tensor_type.name}: {exc})") from None
            blocks.append(torch.from_numpy(array if array.flags.writeable else array.copy()).float())
        return self._hf_layout(name, torch.cat(blocks))

    def meta(self, name: str) -> Tensor:
        """Tensor ``name`` as :meth:`get` would give it, on the ``meta`` device (from the tensor info, no data)."""
        self._require_float(name)
        blocks = [torch.empty([int(n) for n in reversed(t.shape)], device="meta")  # GGUF lists the fastest first
                  for t in self._tensors[name]]
        return self._hf_layout(name, torch.cat(blocks))

    def _require_float(self, name: str) -> None:
        for tensor in self._tensors[name]:
            kind = tensor.tensor_type.name
            require_float(kind not in ("I8", "I16", "I32", "I64"), kind, tensor.name, self.path)

    def _hf_layout(self, name: str, weight: Tensor) -> Tensor:
        if self.layout.permuted_qk and name.endswith(("self_attn.q_proj.weight", "self_attn.q_proj.bias")):
            weight = unpermute(weight, self.config["num_attention_heads"])
        elif self.layout.permuted_qk and name.endswith(("self_attn.k_proj.weight", "self_attn.k_proj.bias")):
            weight = unpermute(weight, self.config["num_key_value_heads"])
        return weight if self.layout.weight is None else self.layout.weight(name, weight)
