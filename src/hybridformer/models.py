"""The three model shapes, all built from the same stacks of layers: seq2seq, causal LM, encoder.

``build_model(cfg)`` is where the config stops: everything below receives plain arguments.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor, nn

from .attention import ATTENTION, ALiBi, T5RelativeBias
from .attention.head_subset import apply_pruned_heads
from .attention.masks import drop_empty_padding
from .blocks import LAYERS, Layer, LayerParts
from .blocks.deepnet import deepnet_constants, deepnet_init
from .cache import DecodingCache, project
from .config import AttentionConfig, ModelConfig, RopeScaling, StackConfig
from .context import MixerContext
from .position import LearnedPositions, RotaryEmbedding, SinusoidalPositions
from .quantized import format_structure


class TokenEmbedding(nn.Embedding):
    """Token embedding, optionally scaled by √d_model (so it matches sinusoidal positions in size).

    ``multiplier`` scales them further (Granite's ``embedding_multiplier``). Padding embeds as zeros. A pad
    id of ``vocab_size`` lies outside the vocabulary (GPT-2 has no free token for padding): it has no row and
    no logit, and is embedded as zeros all the same.
    """

    def __init__(self, vocab_size: int, d_model: int, pad_id: int, scale: bool, multiplier: float = 1.0) -> None:
        inside = pad_id < vocab_size
        super().__init__(vocab_size, d_model, padding_idx=pad_id if inside else None)
        self.scale = (math.sqrt(d_model) if scale else 1.0) * multiplier
        self.outside_pad = None if inside else pad_id
        nn.init.normal_(self.weight, std=d_model**-0.5)
        if inside:
            with torch.no_grad():
                self.weight[pad_id].zero_()

    def forward(self, tokens: Tensor) -> Tensor:
        if self.outside_pad is not None:
            padding = tokens.eq(self.outside_pad).unsqueeze(-1)
            x = super().forward(tokens.clamp(max=self.num_embeddings - 1)).masked_fill(padding, 0.0)
        else:
            x = super().forward(tokens)
        return x * self.scale if self.scale != 1.0 else x


def vocab_logits(output: nn.Module, h: Tensor, cache: DecodingCache | None, logits_to_keep: int = 0) -> Tensor:
    """``output(h)``, the vocabulary projection, of the last ``logits_to_keep`` positions (0: all).

    Decoding needs only the next-token distribution, so a prompt pass keeps one position: the
    (positions × vocabulary) logits of the others are never computed (``transformers``' ``logits_to_keep``).
    In incremental decoding the GEMM layout follows the number of rows, as measured on CPU (1 thread,
    SmolLM2's 49,152 × 576 head; docs/RESULTS.md): one row goes through :func:`~hybridformer.cache.project`
    (the weight's kept transpose), 2-16 rows multiply the weight by the transposed rows (1.4-1.6x
    ``F.linear``'s speed, no copy), more rows use ``F.linear``.
    """
    if logits_to_keep > 0:
        h = h[:, -logits_to_keep:]
    rows = h.shape[0] * h.shape[1]
    if cache is None or type(output) is not nn.Linear or output.bias is not None or rows == 1 or rows > 16:
        return project(output, h, cache)
    return torch.mm(output.weight, h.reshape(rows, -1).t()).t().reshape(*h.shape[:-1], -1)


class Stack(nn.Module):
    """Layers sharing one causality and one position scheme; positions are computed once per call.

    The embedding side of a pretrained stack may add a token-type row (BERT: type 0) and a norm
    over the summed embeddings (BART's ``layernorm_embedding``, BERT's embedding LayerNorm).
    With ``count_non_padding`` absolute positions count only each row's non-padding tokens and
    padding reads position -1 (RoBERTa's ``create_position_ids_from_input_ids``).
    ``layer_ropes`` gives chosen layers their own rotation (their own RoPE scaling, or Gemma 3's local
    layers' own base); each distinct one is computed once per call.
    """

    def __init__(
        self, layers: list[Layer], final_norm: nn.Module | None, *, causal: bool, dropout: float = 0.0,
        absolute: nn.Module | None = None, rope: RotaryEmbedding | None = None, score_bias: nn.Module | None = None,
        token_type: nn.Embedding | None = None, embed_norm: nn.Module | None = None, count_non_padding: bool = False,
        layer_ropes: dict[int, RotaryEmbedding] | None = None,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.final_norm, self.causal = final_norm, causal
        self.absolute, self.rope, self.score_bias = absolute, rope, score_bias
        self.layer_ropes = nn.ModuleDict({str(i): r for i, r in (layer_ropes or {}).items()})  # index -> own RoPE
        self.token_type, self.embed_norm, self.count_non_padding = token_type, embed_norm, count_non_padding
        self.dropout = nn.Dropout(dropout)

    def embed(self, x: Tensor, positions: Tensor, padding_mask: Tensor | None, offset: int) -> Tensor:
        """Token embeddings (batch, L, d_model) plus absolute positions, token type 0, then the embedding norm."""
        if self.token_type is not None:
            x = x + self.token_type.weight[0]
        if self.absolute is not None:
            if self.count_non_padding and padding_mask is not None:
                keep = (~padding_mask).long()
                positions = (keep.cumsum(1) + offset) * keep - 1  # (batch, L); padding -> -1
            x = x + self.absolute(positions).to(x.dtype)
        return x if self.embed_norm is None else self.embed_norm(x)

    def forward(
        self, x: Tensor, *, padding_mask: Tensor | None = None, offset: int = 0,
        memory: Tensor | None = None, memory_padding_mask: Tensor | None = None, cache: DecodingCache | None = None,
    ) -> Tensor:
        """x: (batch, L, d_model) embedded tokens at positions offset..offset+L-1 (with a left-padded cache,
        ``cache.start``: at columns offset..offset+L-1, each row's positions counted from its own start)."""
        positions = row_positions = torch.arange(offset, offset + x.shape[1], device=x.device)
        if cache is not None and cache.start is not None:
            row_positions = (positions[None] - cache.start[:, None]).clamp(min=0)  # (batch, L); padding -> 0
            padding_mask = drop_empty_padding(positions[None] < cache.start[:, None])
        x = self.embed(x, row_positions, padding_mask, offset)
        ctx = MixerContext(
            padding_mask=padding_mask, causal=self.causal, positions=positions,
            rope=self.rope(row_positions) if self.rope is not None else None,
            # relative biases (ALiBi, T5) see only differences, which columns give for every row
            score_bias=self.score_bias(positions, positions) if self.score_bias is not None else None,
            cache=cache, memory=memory, memory_padding_mask=memory_padding_mask,
        )
        x = self.dropout(x)
        rotations = {}  # layers with their own RoPE scaling: one Rotation per distinct RotaryEmbedding
        for index, layer in enumerate(self.layers):
            rope = self.layer_ropes[str(index)] if str(index) in self.layer_ropes else None
            if rope is not None and id(rope) not in rotations:
                rotations[id(rope)] = replace(ctx, rope=rope(positions))
            x = layer(x, ctx if rope is None else rotations[id(rope)])
        return x if self.final_norm is None else self.final_norm(x)


class EncoderDecoder(nn.Module):
    """Sequence-to-sequence model: translation, summarization."""

    def __init__(self, src_embed: TokenEmbedding, encoder: Stack, tgt_embed: TokenEmbedding, decoder: Stack,
                 output: nn.Linear, pad_id: int, output_scale: float = 1.0) -> None:
        super().__init__()
        self.src_embed, self.encoder, self.tgt_embed, self.decoder, self.output = (
            src_embed, encoder, tgt_embed, decoder, output)
        self.pad_id = pad_id
        self.output_scale = output_scale  # T5 with tied embeddings: d_model**-0.5 before the projection

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """src: (batch, S) -> memory (batch, S, d_model) and its padding mask (batch, S)."""
        mask = src.eq(self.pad_id)
        return self.encoder(self.src_embed(src), padding_mask=mask), mask

    def decode(self, tgt: Tensor, memory: Tensor, memory_padding_mask: Tensor, *,
               cache: DecodingCache | None = None, offset: int = 0, logits_to_keep: int = 0) -> Tensor:
        """tgt: (batch, T) -> logits (batch, T, vocab); with a cache, tgt holds only the new tokens.
        ``logits_to_keep`` > 0: logits of the last that many positions only (batch, logits_to_keep, vocab).

        The first target token is the decoder start token and never padding, even where it is the pad
        id (T5, Marian)."""
        h = self.decoder_states(tgt, memory, memory_padding_mask, cache=cache, offset=offset)
        return vocab_logits(self.output, h, cache, logits_to_keep)

    def decoder_states(self, tgt: Tensor, memory: Tensor, memory_padding_mask: Tensor, *,
                       cache: DecodingCache | None = None, offset: int = 0) -> Tensor:
        """tgt: (batch, T) -> the states ``output`` projects onto the vocabulary (batch, T, d_model)."""
        padding = None
        if cache is None:
            padding = tgt.eq(self.pad_id)
            if offset == 0:
                padding[:, 0] = False
        h = self.decoder(self.tgt_embed(tgt), padding_mask=padding, offset=offset, memory=memory,
                         memory_padding_mask=memory_padding_mask, cache=cache)
        return h * self.output_scale if self.output_scale != 1.0 else h

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        memory, mask = self.encode(src)
        return self.decode(tgt, memory, mask)


class DecoderLM(nn.Module):
    """Causal language model (decoder only)."""

    def __init__(self, embed: TokenEmbedding, decoder: Stack, output: nn.Linear, pad_id: int,
                 output_scale: float = 1.0) -> None:
        super().__init__()
        self.embed, self.decoder, self.output, self.pad_id = embed, decoder, output, pad_id
        self.output_scale = output_scale  # Granite: 1 / logits_scaling, applied before the (bias-free) projection

    def decode(self, tokens: Tensor, *, cache: DecodingCache | None = None, offset: int = 0,
               logits_to_keep: int = 0) -> Tensor:
        """tokens: (batch, T) -> logits (batch, T, vocab), or of the last ``logits_to_keep`` positions only."""
        return vocab_logits(self.output, self.states(tokens, cache=cache, offset=offset), cache, logits_to_keep)

    def states(self, tokens: Tensor, *, cache: DecodingCache | None = None, offset: int = 0) -> Tensor:
        """tokens: (batch, T) -> the states ``output`` projects onto the vocabulary (batch, T, d_model)."""
        padding = tokens.eq(self.pad_id) if cache is None else None
        h = self.decoder(self.embed(tokens), padding_mask=padding, offset=offset, cache=cache)
        return h * self.output_scale if self.output_scale != 1.0 else h

    def forward(self, tokens: Tensor) -> Tensor:
        return self.decode(tokens)


class Encoder(nn.Module):
    """Bidirectional encoder with a classification head over the mean of its non-padding states.

    With ``num_classes=0`` there is no head: the model is a sentence encoder (a converted BERT or
    RoBERTa) and ``forward`` returns the mean-pooled sentence embeddings (sentence-transformers' pooling).
    """

    def __init__(self, embed: TokenEmbedding, encoder: Stack, num_classes: int, pad_id: int) -> None:
        super().__init__()
        self.embed, self.encoder, self.pad_id = embed, encoder, pad_id
        self.head = nn.Linear(embed.embedding_dim, num_classes) if num_classes else None

    def encode(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        mask = tokens.eq(self.pad_id)
        return self.encoder(self.embed(tokens), padding_mask=mask), mask

    def sentence_embedding(self, tokens: Tensor) -> Tensor:
        """tokens: (batch, L) -> the mean of each row's non-padding states (batch, d_model)."""
        states, mask = self.encode(tokens)
        keep = (~mask).unsqueeze(-1).to(states.dtype)
        return (states * keep).sum(1) / keep.sum(1).clamp(min=1.0)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens: (batch, L) -> class logits (batch, num_classes), or sentence embeddings without a head."""
        pooled = self.sentence_embedding(tokens)
        return pooled if self.head is None else self.head(pooled)


# ----------------------------------------------------------------------------- building


def _build_float_model(cfg: ModelConfig) -> EncoderDecoder | DecoderLM | Encoder:
    """The uncompressed model of ``cfg`` (random init)."""
    scales = deepnet_constants(cfg.arch, cfg.encoder.layers, cfg.decoder.layers)
    alpha_beta = scales if cfg.residual == "deepnet" else {"encoder": (1.0, None), "decoder": (1.0, None)}

    def embedding() -> TokenEmbedding:
        return TokenEmbedding(cfg.vocab_size, cfg.d_model, cfg.pad_id, cfg.embed_scale, cfg.embed_multiplier)

    def stack(role: str, stack_cfg: StackConfig, *, causal: bool, cross: bool) -> Stack:
        alpha, beta = alpha_beta[role]
        built = build_stack(cfg, stack_cfg, causal=causal, cross=cross, alpha=alpha, where=f"model.{role}")
        if beta is not None:
            deepnet_init(built, beta)
        return built

    def output_layer(embed: TokenEmbedding) -> nn.Linear:
        output = nn.Linear(cfg.d_model, cfg.vocab_size, bias=cfg.final_logits_bias)
        if cfg.final_logits_bias:
            nn.init.zeros_(output.bias)
        if cfg.tie_embeddings:
            output.weight = embed.weight
        return output

    if cfg.arch == "encoder_decoder":
        src_embed = embedding()
        tgt_embed = src_embed if cfg.share_embeddings else embedding()
        return EncoderDecoder(
            src_embed, stack("encoder", cfg.encoder, causal=False, cross=False),
            tgt_embed, stack("decoder", cfg.decoder, causal=True, cross=True), output_layer(tgt_embed), cfg.pad_id,
            cfg.output_scale)
    if cfg.arch == "decoder_lm":
        embed = embedding()
        return DecoderLM(embed, stack("decoder", cfg.decoder, causal=True, cross=False), output_layer(embed),
                         cfg.pad_id, cfg.output_scale)
    embed = embedding()
    return Encoder(embed, stack("encoder", cfg.encoder, causal=False, cross=False), cfg.num_classes, cfg.pad_id)


def build_stack(cfg: ModelConfig, stack_cfg: StackConfig, *, causal: bool, cross: bool, alpha: float = 1.0,
                where: str = "model") -> Stack:
    """One stack of ``stack_cfg.layers`` layers with this model's width, norms and positions."""
    ATTENTION[stack_cfg.attention.name].check(causal=causal, position=cfg.position, where=f"{where}.attention")
    for index, override in sorted(stack_cfg.layer_attention.items()):
        ATTENTION[override.name].check(causal=causal, position=cfg.position,
                                       where=f"{where}.layer_attention.{index}")
    parts = LayerParts(
        d_model=cfg.d_model, heads=cfg.heads, kv_heads=cfg.num_kv_heads, ffn_dim=cfg.ffn_dim,
        activation=cfg.activation, norm=cfg.norm, prenorm=cfg.norm_placement != "post", dropout=cfg.dropout,
        sandwich=cfg.norm_placement == "sandwich", qk_norm=cfg.qk_norm,
        residual_scheme=cfg.residual, alpha=alpha, score_scale=cfg.score_scale,
        residual_multiplier=cfg.residual_multiplier,
        attention=stack_cfg.attention.name, attention_options=stack_cfg.attention.options,
        cross_attention=cfg.cross_attention.name, cross_attention_options=cfg.cross_attention.options,
        causal=causal, head_dim=cfg.head_dim, norm_eps=cfg.norm_eps, attention_bias=cfg.attention_bias,
        qkv_bias=cfg.qkv_bias, ffn_bias=cfg.ffn_bias, **stack_cfg.conv.layer_parts(),
        **stack_cfg.ssm.layer_parts(),
    )
    layers = [LAYERS[stack_cfg.layer_of(i)](_with_attention(parts, stack_cfg.attention_of(i)), cross)
              for i in range(stack_cfg.layers)]
    needs_final_norm = parts.prenorm and cfg.residual != "rezero"
    return Stack(
        layers, parts.norm_layer() if needs_final_norm else None, causal=causal, dropout=cfg.dropout,
        absolute=_absolute_positions(cfg), rope=_rotary(cfg),
        score_bias=_score_bias(cfg, bidirectional=not causal),
        token_type=nn.Embedding(cfg.type_vocab_size, cfg.d_model) if cfg.type_vocab_size else None,
        embed_norm=parts.norm_layer() if cfg.layernorm_embedding else None,
        count_non_padding=cfg.positions_skip_padding, layer_ropes=_layer_rotaries(cfg, stack_cfg),
    )


def _with_attention(parts: LayerParts, attention: AttentionConfig) -> LayerParts:
    """``parts`` with this layer's self-attention (a per-layer override, or the stack's own)."""
    return replace(parts, attention=attention.name, attention_options=attention.options)


def _absolute_positions(cfg: ModelConfig) -> nn.Module | None:
    if cfg.position == "sinusoidal":
        return SinusoidalPositions(cfg.d_model, cfg.sinusoid_layout)
    if cfg.position == "learned":
        return LearnedPositions(cfg.max_positions, cfg.d_model, cfg.position_offset)
    return None


def _rotary(cfg: ModelConfig, scaling: RopeScaling | None = None, base: float | None = None) -> RotaryEmbedding | None:
    """The model's RoPE, or one with ``scaling`` instead of the model's ``rope_scaling``, or with its own
    ``base`` (an attention's ``rope_base``: unscaled unless ``scaling`` is given)."""
    if cfg.position != "rope":
        return None
    scaling = scaling or (cfg.rope_scaling if base is None else None)
    options = scaling.rotary_options(cfg.max_positions) if scaling is not None else {}
    return RotaryEmbedding(cfg.attention_head_dim, base or cfg.rope_base, **options)


def _layer_rotaries(cfg: ModelConfig, stack_cfg: StackConfig) -> dict[int, RotaryEmbedding]:
    """The layers with their own RoPE (``layer_rope_scaling``, an attention's ``rope_base``), each distinct one
    built once (its rotation is computed once per call)."""
    built: dict[tuple, RotaryEmbedding] = {}
    out = {}
    for i in range(stack_cfg.layers):
        scaling, base = stack_cfg.layer_rope_scaling.get(i), stack_cfg.attention_of(i).rope_base
        if scaling is not None or base is not None:
            key = (scaling.model_dump_json() if scaling else None, base)
            out[i] = built.setdefault(key, _rotary(cfg, scaling, base))
    return out


def _score_bias(cfg: ModelConfig, *, bidirectional: bool) -> nn.Module | None:
    if cfg.position == "alibi":
        return ALiBi(cfg.heads)
    if cfg.position == "t5":
        return T5RelativeBias(cfg.heads, num_buckets=cfg.t5_buckets, max_distance=cfg.t5_max_distance,
                              bidirectional=bidirectional)
    return None


def build_model(cfg: ModelConfig) -> EncoderDecoder | DecoderLM | Encoder:
    """Turn a validated ModelConfig into a model (random init), then replay its compression: pruned attention
    heads, then the linear layers' weight format as empty layers for the checkpoint's weights (docs/compression.md)."""
    model = apply_pruned_heads(_build_float_model(cfg), cfg.pruned_heads,
                               per_head_bias=cfg.position in ("alibi", "t5"))
    return format_structure(model, cfg.quantization) if cfg.quantization else model
