"""The same-size models a user would pick instead of hybridformer, behind one small interface.

Each contender exposes ``loss(src, tgt_in, tgt_out)`` for a training step and, for seq2seq,
``greedy(src, steps)`` / ``beam(src, steps, beams)`` that always generate exactly ``steps``
tokens (EOS is never allowed to end a benchmark early). A peer whose library is missing is
reported as skipped, never as an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig


@dataclass
class Size:
    """One benchmark size: a seq2seq model (or a decoder-only LM when ``lm``)."""

    d_model: int = 256
    heads: int = 4
    layers: int = 3  # per stack
    ffn_dim: int = 1024
    vocab: int = 8000
    batch: int = 32
    src_len: int = 32
    tgt_len: int = 32
    lm: bool = False


@dataclass
class Contender:
    name: str
    model: nn.Module
    loss: Callable[[Tensor, Tensor, Tensor], Tensor]
    greedy: Callable[[Tensor, int], Tensor] | None = None
    beam: Callable[[Tensor, int, int], object] | None = None
    version: str = ""


def cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


# ----------------------------------------------------------------------------- hybridformer


def hybridformer(size: Size, config: ModelConfig | None = None) -> Contender:
    """hybridformer at ``size``, or exactly ``config`` (whose sizes then define ``size``)."""
    import hybridformer as hf
    from hybridformer.decoding import ModelScorer, beam_search, greedy_search

    cfg = config or hf.ModelConfig(
        arch="decoder_lm" if size.lm else "encoder_decoder", vocab_size=size.vocab, d_model=size.d_model,
        heads=size.heads, ffn_dim=size.ffn_dim, dropout=0.0, encoder={"layers": size.layers},
        decoder={"layers": size.layers},
    )
    model = hf.build_model(cfg)
    if size.lm:
        return Contender("hybridformer", model, lambda src, tgt_in, tgt_out: cross_entropy(model(tgt_in), tgt_out),
                         version=hf.__version__)

    def scorer_and_start(src: Tensor) -> tuple[NoEarlyEnd, Tensor]:
        return NoEarlyEnd(ModelScorer(model), cfg.eos_ids), torch.full((src.shape[0], 1), cfg.bos_id)

    def greedy(src: Tensor, steps: int):
        scorer, start = scorer_and_start(src)
        return greedy_search(scorer, scorer.init_state(src), start, eos_id=cfg.eos_id, max_new_tokens=steps)

    def beam(src: Tensor, steps: int, beams: int):
        scorer, start = scorer_and_start(src)
        return beam_search(scorer, scorer.init_state(src), start, beam=beams, eos_id=cfg.eos_id, max_len=steps)

    return Contender("hybridformer", model, lambda src, tgt_in, tgt_out: cross_entropy(model(src, tgt_in), tgt_out),
                     greedy, beam, hf.__version__)


class NoEarlyEnd:
    """A Scorer that never ends a hypothesis early, so every contender generates exactly ``steps`` tokens."""

    def __init__(self, scorer, eos_ids: list[int]) -> None:
        self.scorer, self.eos_ids = scorer, eos_ids

    def init_state(self, src):
        return self.scorer.init_state(src)

    def step(self, state, prev_tokens: Tensor):
        log_probs, state = self.scorer.step(state, prev_tokens)
        log_probs[:, self.eos_ids] = float("-inf")
        return log_probs, state

    def reorder(self, state, beam_index: Tensor):
        return self.scorer.reorder(state, beam_index)


# ----------------------------------------------------------------------------- torch.nn.Transformer


class TorchSeq2Seq(nn.Module):
    """torch.nn.Transformer with tied embeddings, sinusoid-free learned positions and an output layer."""

    def __init__(self, size: Size) -> None:
        super().__init__()
        self.embed = nn.Embedding(size.vocab, size.d_model)
        self.pos = nn.Embedding(4096, size.d_model)
        self.core = nn.Transformer(size.d_model, size.heads, size.layers, size.layers, size.ffn_dim, dropout=0.0,
                                   batch_first=True)
        self.out = nn.Linear(size.d_model, size.vocab, bias=False)
        self.out.weight = self.embed.weight

    def embed_at(self, tokens: Tensor) -> Tensor:
        return self.embed(tokens) + self.pos(torch.arange(tokens.shape[1]))

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
        h = self.core(self.embed_at(src), self.embed_at(tgt), tgt_mask=mask, tgt_is_causal=True)
        return self.out(h)


class TorchLM(nn.Module):
    def __init__(self, size: Size) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(size.vocab, size.d_model), nn.Embedding(4096, size.d_model)
        layer = nn.TransformerEncoderLayer(size.d_model, size.heads, size.ffn_dim, dropout=0.0, batch_first=True)
        self.core = nn.TransformerEncoder(layer, size.layers, enable_nested_tensor=False)
        self.out = nn.Linear(size.d_model, size.vocab, bias=False)

    def forward(self, tokens: Tensor) -> Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(tokens.shape[1])
        h = self.core(self.embed(tokens) + self.pos(torch.arange(tokens.shape[1])), mask=mask, is_causal=True)
        return self.out(h)


def torch_nn(size: Size) -> Contender:
    """torch.nn.Transformer has no incremental decoding, so it is measured for training only."""
    if size.lm:
        model = TorchLM(size)
        return Contender("torch.nn.Transformer", model,
                         lambda src, tgt_in, tgt_out: cross_entropy(model(tgt_in), tgt_out), version=torch.__version__)
    model = TorchSeq2Seq(size)
    return Contender("torch.nn.Transformer", model,
                     lambda src, tgt_in, tgt_out: cross_entropy(model(src, tgt_in), tgt_out), version=torch.__version__)


# ----------------------------------------------------------------------------- HuggingFace


def huggingface(size: Size) -> Contender:
    import transformers

    if size.lm:
        config = transformers.GPT2Config(vocab_size=size.vocab, n_embd=size.d_model, n_layer=size.layers,
                                         n_head=size.heads, n_inner=size.ffn_dim, n_positions=max(1024, size.tgt_len),
                                         resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        model = transformers.GPT2LMHeadModel(config)
        return Contender("HF GPT2", model,
                         lambda src, tgt_in, tgt_out: cross_entropy(model(input_ids=tgt_in).logits, tgt_out),
                         version=transformers.__version__)
    config = transformers.BartConfig(
        vocab_size=size.vocab, d_model=size.d_model, encoder_layers=size.layers, decoder_layers=size.layers,
        encoder_attention_heads=size.heads, decoder_attention_heads=size.heads, encoder_ffn_dim=size.ffn_dim,
        decoder_ffn_dim=size.ffn_dim, max_position_embeddings=1024, dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        forced_eos_token_id=None,
    )
    model = transformers.BartForConditionalGeneration(config)

    def loss(src, tgt_in, tgt_out):
        return cross_entropy(model(input_ids=src, decoder_input_ids=tgt_in).logits, tgt_out)

    def run(src: Tensor, steps: int, beams: int):
        return model.generate(input_ids=src, attention_mask=torch.ones_like(src), num_beams=beams,
                              min_new_tokens=steps, max_new_tokens=steps, do_sample=False, use_cache=True,
                              early_stopping=False, length_penalty=1.0)

    return Contender("HF Bart", model, loss, lambda src, steps: run(src, steps, 1), run, transformers.__version__)


# ----------------------------------------------------------------------------- x-transformers


def x_transformers(size: Size) -> Contender:
    import importlib.metadata

    from x_transformers import Decoder, TransformerWrapper, XTransformer

    version = importlib.metadata.version("x-transformers")
    if size.lm:
        model = TransformerWrapper(num_tokens=size.vocab, max_seq_len=max(1024, size.tgt_len),
                                   attn_layers=Decoder(dim=size.d_model, depth=size.layers, heads=size.heads,
                                                       ff_mult=size.ffn_dim / size.d_model))
        return Contender("x-transformers", model,
                         lambda src, tgt_in, tgt_out: cross_entropy(model(tgt_in), tgt_out), version=version)
    model = XTransformer(
        dim=size.d_model, tie_token_emb=True, enc_num_tokens=size.vocab, enc_depth=size.layers,
        enc_heads=size.heads, enc_max_seq_len=1024, enc_ff_mult=size.ffn_dim / size.d_model,
        dec_num_tokens=size.vocab, dec_depth=size.layers, dec_heads=size.heads, dec_max_seq_len=1024,
        dec_ff_mult=size.ffn_dim / size.d_model,
    )

    def loss(src, tgt_in, tgt_out):
        encoded = model.encoder(src, return_embeddings=True)
        return cross_entropy(model.decoder.net(tgt_in, context=encoded), tgt_out)

    def greedy(src: Tensor, steps: int):
        start = torch.ones(src.shape[0], 1, dtype=torch.long)
        return model.generate(src, start, steps, temperature=0.0, cache_kv=True)

    # No beam entry: x-transformers' beam_search expands the prompt to beams but not the cross-attention
    # context, so it fails for encoder-decoders (2.31); its beam speed is reported as n/a.
    return Contender("x-transformers", model, loss, greedy, None, version)


PEERS: dict[str, Callable[[Size], Contender]] = {
    "torch.nn.Transformer": torch_nn,
    "HF": huggingface,
    "x-transformers": x_transformers,
}
