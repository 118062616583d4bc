"""Tiny random Hugging Face models made locally with transformers (no downloads), and parity checks."""

from __future__ import annotations

from pathlib import Path

import torch

from hybridformer.cache import DecodingCache


def save_tiny(kind: str, directory: Path, **overrides) -> tuple[torch.nn.Module, Path]:
    """``kind`` -> (the transformers model in eval mode, the folder it was saved to)."""
    import transformers

    common = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2)
    variants = {
        "llama": ("LlamaConfig", "LlamaForCausalLM", dict(
            head_dim=16, attention_bias=True, mlp_bias=True, tie_word_embeddings=False,
            rope_parameters={"rope_type": "llama3", "rope_theta": 50000.0, "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
        "llama-dynamic": ("LlamaConfig", "LlamaForCausalLM", dict(
            max_position_embeddings=16, tie_word_embeddings=True,
            rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0})),
        "llama-yarn": ("LlamaConfig", "LlamaForCausalLM", dict(
            rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                             "original_max_position_embeddings": 16})),
        "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(tie_word_embeddings=True)),
        "mistral": ("MistralConfig", "MistralForCausalLM", dict(sliding_window=5)),
        "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(head_dim=16, attention_bias=True, tie_word_embeddings=False,
                                                          rope_parameters={"rope_type": "default",
                                                                           "rope_theta": 1e6})),
        # 2 local layers (window 4) then 1 global one, each kind with its own RoPE base; a query scalar != head_dim
        "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", dict(
            num_hidden_layers=3, head_dim=16, sliding_window=4, query_pre_attn_scalar=12, pad_token_id=0,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
            rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})),
        "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(pad_token_id=0, tie_word_embeddings=False, sliding_window=6)),
        # LongRoPE: the short factors up to 16 positions, the long ones past them (factor 64 / 16)
        "phi3-longrope": ("Phi3Config", "Phi3ForCausalLM", dict(
            pad_token_id=0, original_max_position_embeddings=16,
            rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0, 1.1, 1.5, 2.0],
                             "long_factor": [1.0, 2.0, 4.0, 8.0], "original_max_position_embeddings": 16})),
        # LFM2: short-convolution layers around one attention layer; the FFN width derived as HF does (96 -> 64)
        "lfm2": ("Lfm2Config", "Lfm2ForCausalLM", dict(
            num_hidden_layers=3, layer_types=["conv", "full_attention", "conv"], intermediate_size=96,
            block_multiple_of=16, tie_word_embeddings=False, pad_token_id=0)),
        # Granite-4.0-H (dense): Mamba-2 layers around an attention layer, its multipliers off their defaults
        "granite-hybrid": ("GraniteMoeHybridConfig", "GraniteMoeHybridForCausalLM", dict(
            num_hidden_layers=3, layer_types=["mamba", "attention", "mamba"], num_local_experts=0,
            shared_intermediate_size=48, mamba_n_heads=8, mamba_d_head=8, mamba_d_state=8, mamba_n_groups=2,
            mamba_chunk_size=4, embedding_multiplier=1.5, residual_multiplier=0.7, attention_multiplier=0.3,
            logits_scaling=2.5, pad_token_id=0, position_embedding_type="rope")),
        # Falcon-H1: attention and Mamba-2 in parallel in each layer; an inner width apart from expand·hidden, every
        # µP multiplier off its default, biases everywhere, the norm-before-gate output norm
        "falcon-h1": ("FalconH1Config", "FalconH1ForCausalLM", dict(
            mamba_d_ssm=48, mamba_n_heads=6, mamba_d_head=8, mamba_d_state=8, mamba_n_groups=2, mamba_chunk_size=4,
            mamba_rms_norm=True, mamba_norm_before_gate=True, mamba_proj_bias=True, projectors_bias=True,
            attention_bias=True, mlp_bias=True, pad_token_id=0, tie_word_embeddings=False,
            embedding_multiplier=1.5, lm_head_multiplier=0.8, mlp_multipliers=[1.3, 0.6], key_multiplier=0.9,
            attention_in_multiplier=1.2, attention_out_multiplier=0.7, ssm_multipliers=[1.1, 0.9, 1.2, 0.8, 1.3],
            ssm_in_multiplier=0.95, ssm_out_multiplier=1.1)),
        # ... and without its Mamba output norm (y·SiLU(z)), tied
        "falcon-h1-nonorm": ("FalconH1Config", "FalconH1ForCausalLM", dict(
            mamba_d_ssm=None, mamba_n_heads=8, mamba_d_head=8, mamba_d_state=8, mamba_chunk_size=4,
            mamba_rms_norm=False, pad_token_id=0, tie_word_embeddings=True, key_multiplier=1.3,
            ssm_multipliers=[0.7, 1.2, 1.0, 1.1, 0.9])),
        # GPT-2: one special token for BOS and EOS, no pad token (the pad goes outside the vocabulary)
        "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                                       bos_token_id=95, eos_token_id=95)),
    }
    config_class, model_class, extra = variants[kind]
    base = {"vocab_size": common["vocab_size"]} if kind == "gpt2" else common
    config = getattr(transformers, config_class)(**(base | extra | overrides))
    model = getattr(transformers, model_class)(config).eval()
    with torch.no_grad():  # random biases (HF initialises them to zero, which would hide a mapping error)
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(std=0.1)
            elif (kind == "gpt2" and ".ln_" in name) or "norm" in name:  # norm weights too: a swap must show
                param.normal_(1.0, 0.2)
            elif kind in ("qwen3", "gemma3") and "norm" in name:  # so are swapped q/k or sandwich norms
                param.normal_(0.0 if kind == "gemma3" else 1.0, 0.2)
            elif name.endswith(("dt_bias", "A_log", ".D")):  # Mamba-2's per-head constants, off their init
                param.uniform_(-1.0, 1.0)
    model.save_pretrained(directory)
    return model, directory


CHAT_TEMPLATE = ("{% for m in messages %}{{ bos_token }}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}{% endfor %}"
                 "{% if add_generation_prompt %}{{ bos_token }}assistant:{% endif %}")


def converted_tiny(root: Path, text: list[str], kind: str = "llama") -> Path:
    """A tiny ``kind`` model converted to our checkpoint, with a BPE tokenizer learned from ``text`` and a chat
    template."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from hybridformer import convert

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer, tokenizer.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=90, special_tokens=["<unk>", "<s>", "</s>"])
    tokenizer.train_from_iterator(text, trainer)
    rope = {} if kind == "gemma3" else {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}
    _, folder = save_tiny(kind, root / "hf", **rope)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "chat_template": CHAT_TEMPLATE}))
    return convert(folder, root / "ckpt")


def hf_ids(tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    """``tokens`` as transformers can embed them: a pad id outside the vocabulary (GPT-2) becomes 0 (masked)."""
    return tokens.masked_fill(tokens.ge(vocab), 0)


def padded_batch(vocab: int, pad_id: int, lengths: list[int], avoid: tuple[int, ...] = ()) -> torch.Tensor:
    """Right-padded random tokens that never use ``pad_id`` (or ``avoid``) inside a row."""
    allowed = torch.tensor([t for t in range(vocab) if t != pad_id and t not in avoid])
    rows = torch.full((len(lengths), max(lengths)), pad_id)
    for row, length in enumerate(lengths):
        rows[row, :length] = allowed[torch.randint(len(allowed), (length,))]
    return rows


@torch.no_grad()
def cached_logits(model: torch.nn.Module, tokens: torch.Tensor, prompt: int) -> torch.Tensor:
    """Logits of ``tokens`` computed by feeding the prompt, then one token at a time through the cache."""
    cache = DecodingCache()
    out = [model.decode(tokens[:, :prompt], cache=cache, offset=0)]
    for pos in range(prompt, tokens.shape[1]):
        out.append(model.decode(tokens[:, pos : pos + 1], cache=cache, offset=pos))
    return torch.cat(out, dim=1)


_GGUF_LAYER = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
               "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
               "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
_GGUF_GLOBAL = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                "lm_head.weight": "output.weight"}


def llama_cpp_permute(weight, heads: int):
    """llama.cpp's convert_hf_to_gguf ``LlamaModel.permute`` (q/k rows to its adjacent-pair RoPE layout)."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(
        weight.shape)


_GGUF_EXTRA = {  # llama.cpp's per-layer names beyond the Llama ones
    "qwen3": {"self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm"},
    "gemma3": {"self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
               "post_attention_layernorm": "post_attention_norm", "pre_feedforward_layernorm": "ffn_norm",
               "post_feedforward_layernorm": "post_ffw_norm"},
}


def write_tiny_gguf(hf: torch.nn.Module, path: Path, arch: str = "llama", quantized: bool = True, **fields) -> Path:
    """Write a transformers model as llama.cpp would: Q8_0 matrices, metadata under ``ARCH.``; Llama's q/k rows
    permuted, Gemma's norm weights stored as 1 + w (its converter's ``norm_shift``)."""
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    cfg = hf.config
    layer_names = _GGUF_LAYER | _GGUF_EXTRA.get(arch, {})
    writer = GGUFWriter(str(path), arch)
    writer.add_name("tiny llama")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    rope = cfg.rope_parameters.get("full_attention", cfg.rope_parameters)
    writer.add_rope_freq_base(rope["rope_theta"])
    if getattr(cfg, "head_dim", None):
        writer.add_key_length(cfg.head_dim)
        writer.add_value_length(cfg.head_dim)
    if arch == "gemma3":
        writer.add_sliding_window(cfg.sliding_window)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_bos_token_id(cfg.bos_token_id)
    writer.add_eos_token_id(cfg.eos_token_id)
    for key, value in fields.items():
        writer.add_string(key, value) if isinstance(value, str) else writer.add_float32(key, value)
    for name, tensor in hf.state_dict().items():
        array = tensor.float().numpy()
        if name in _GGUF_GLOBAL:
            gguf_name = _GGUF_GLOBAL[name]
        else:
            parts = name.split(".")
            gguf_name = f"blk.{parts[2]}.{layer_names['.'.join(parts[3:-1])]}.{parts[-1]}"
        if arch == "llama" and "q_proj" in name:
            array = llama_cpp_permute(array, cfg.num_attention_heads)
        if arch == "llama" and "k_proj" in name:
            array = llama_cpp_permute(array, cfg.num_key_value_heads)
        if arch == "gemma3" and name.endswith("norm.weight"):
            array = array + 1
        q8 = GGMLQuantizationType.Q8_0
        if array.ndim == 2 and quantized:
            writer.add_tensor(gguf_name, quantize(array, q8), raw_dtype=q8)
        else:
            writer.add_tensor(gguf_name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
