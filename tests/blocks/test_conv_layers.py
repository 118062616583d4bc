"""Every layer type, in encoders and decoders: causality, padding invariance, cached decoding, any kernel."""

from __future__ import annotations

import pytest
import torch

from hybridformer import ModelConfig, build_model
from hybridformer.attention import ATTENTION
from hybridformer.blocks import LAYERS, Residual
from hybridformer.config import load_config
from hybridformer.decoding import ModelScorer, output_log_probs
from hybridformer.errors import ConfigError

CASES = [(name, {}) for name in LAYERS] + [("branchformer", {"merge": "learned"}), ("lsra", {"lsra_conv": "dynamic"})]
IDS = [name + "".join(f"-{v}" for v in conv.values()) for name, conv in CASES]


def config(layer: str, conv: dict, arch: str, *, position: str = "sinusoidal", attention: str = "full",
           **model) -> ModelConfig:
    """Two tiny layers per stack, grouped-query attention (kv_heads=1), no dropout; Mamba-2 scans in chunks of 3."""
    conv = {"kernel_size": 3, "heads": 2, **conv}
    ssm = {"head_dim": 8, "state_size": 4, "chunk_size": 3}
    stack = {"layers": 2, "layer": layer, "attention": {"name": attention}, "conv": conv, "ssm": ssm}
    return ModelConfig(arch=arch, vocab_size=40, d_model=16, heads=2, kv_heads=1, ffn_dim=32, dropout=0.0,
                       position=position, encoder=stack, decoder=stack, **model)


def tokens(*shape: int) -> torch.Tensor:
    return torch.randint(3, 40, shape)


def decoder_stack_call(model, x):
    """Run the decoder stack on embeddings x (so gradients w.r.t. the inputs can be checked)."""
    if hasattr(model, "encode"):
        memory, mask = model.encode(tokens(2, 5))
        return model.decoder(x, memory=memory, memory_padding_mask=mask)
    return model.decoder(x)


@pytest.mark.parametrize("arch", ["decoder_lm", "encoder_decoder"])
@pytest.mark.parametrize(("layer", "conv"), CASES, ids=IDS)
def test_causal_layer_outputs_ignore_later_tokens(layer, conv, arch):
    model = build_model(config(layer, conv, arch))  # training mode: dropout is 0, norms must still be causal
    x = torch.randn(2, 8, 16, requires_grad=True)
    out = decoder_stack_call(model, x)
    (out[:, 4] * torch.randn(16)).sum().backward()  # a random readout: a plain sum of a norm's output is constant
    assert x.grad[:, 5:].abs().max() == 0, "gradient reaches tokens after t"
    assert x.grad[:, :5].abs().max() > 0

    model.eval()
    tgt = tokens(2, 8)
    changed = tgt.clone()
    changed[:, 5:] = tokens(2, 3)
    src = tokens(2, 5)
    run = (lambda t: model(src, t)) if arch == "encoder_decoder" else model
    torch.testing.assert_close(run(tgt)[:, :5], run(changed)[:, :5])


@pytest.mark.parametrize(("layer", "conv"), CASES, ids=IDS)
def test_padding_invariance_encoder_and_decoder(layer, conv):
    model = build_model(config(layer, conv, "encoder_decoder")).eval()
    srcs, tgts = [tokens(5), tokens(8)], [tokens(4), tokens(6)]
    pad = lambda seqs: torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=0)  # noqa: E731
    batched = model(pad(srcs), pad(tgts))
    for i, (src, tgt) in enumerate(zip(srcs, tgts, strict=True)):
        alone = model(src[None], tgt[None])[0]
        torch.testing.assert_close(batched[i, : len(tgt)], alone, atol=1e-5, rtol=1e-4)


def step_through(scorer: ModelScorer, state, seq: torch.Tensor, prompt: int) -> torch.Tensor:
    """Log-probs after each prefix length prompt..L, fed as one prompt chunk and then token by token."""
    outs = []
    log_probs, state = scorer.step(state, seq[:, :prompt])
    outs.append(log_probs)
    for t in range(prompt, seq.shape[1]):
        log_probs, state = scorer.step(state, seq[:, t : t + 1])
        outs.append(log_probs)
    return torch.stack(outs, 1)


@pytest.mark.parametrize("position", ["rope", "alibi"])
@pytest.mark.parametrize("arch", ["decoder_lm", "encoder_decoder"])
@pytest.mark.parametrize(("layer", "conv"), CASES, ids=IDS)
def test_incremental_decoding_equals_full_causal_forward(layer, conv, arch, position):
    model = build_model(config(layer, conv, arch, position=position)).eval()
    tgt = tokens(2, 8)
    scorer = ModelScorer(model)
    if arch == "encoder_decoder":
        src = torch.nn.utils.rnn.pad_sequence([tokens(6), tokens(4)], batch_first=True)
        full, state = model(src, tgt), scorer.init_state(src)
    else:
        full, state = model(tgt), scorer.init_state()
    stepped = step_through(scorer, state, tgt, prompt=3)
    torch.testing.assert_close(stepped, output_log_probs(full[:, 2:], 0), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("scheme", [{"norm_placement": "post", "residual": "deepnet"}, {"residual": "rezero"},
                                    {"norm": "rmsnorm", "activation": "swiglu", "position": "t5"}])
@pytest.mark.parametrize("layer", ["conformer", "ebranchformer", "lsra"])
def test_conv_layers_compose_with_residual_and_norm_options(layer, scheme):
    model = build_model(config(layer, {}, "encoder_decoder", **scheme)).eval()
    for module in model.modules():
        if isinstance(module, Residual) and module.gate is not None:
            module.gate.data.fill_(0.5)  # ReZero starts as the identity; open the gates so the mixers count
    src, tgt = tokens(2, 6), tokens(2, 5)
    full = model(src, tgt)
    scorer = ModelScorer(model)
    stepped = step_through(scorer, scorer.init_state(src), tgt, prompt=1)
    torch.testing.assert_close(stepped, output_log_probs(full, 0), atol=1e-5, rtol=1e-4)


def test_cache_reorder_follows_beams():
    model = build_model(config("conformer", {}, "decoder_lm")).eval()
    seq = tokens(3, 6)
    scorer = ModelScorer(model)
    state = scorer.init_state()
    scorer.step(state, seq[:, :5])
    index = torch.tensor([2, 2, 0])
    state = scorer.reorder(state, index)
    log_probs, _ = scorer.step(state, seq[index, 5:6])
    torch.testing.assert_close(log_probs, output_log_probs(model(seq[index])[:, -1], 0), atol=1e-5, rtol=1e-4)


def _kernels(causal: bool) -> list[str]:
    usable = []
    for name, kernel in sorted(ATTENTION.items()):
        try:
            kernel.check(causal=causal, position="sinusoidal", where="test")
        except ConfigError:
            continue
        usable.append(name)
    return usable


@pytest.mark.parametrize("attention", _kernels(causal=True))
@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_every_layer_type_mixes_with_every_causal_kernel(layer, attention):
    model = build_model(config(layer, {}, "decoder_lm", attention=attention)).eval()
    seq = tokens(2, 7)
    changed = seq.clone()
    changed[:, 4:] = tokens(2, 3)
    out = model(seq)
    assert out.shape == (2, 7, 40) and torch.isfinite(out).all()
    torch.testing.assert_close(out[:, :4], model(changed)[:, :4])


@pytest.mark.parametrize("attention", _kernels(causal=False))
@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_every_layer_type_in_an_encoder_with_every_kernel(layer, attention):
    cfg = config(layer, {}, "encoder_classifier", attention=attention)
    logits = build_model(cfg).eval()(tokens(2, 9))
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


def test_layer_type_is_chosen_per_stack():
    cfg = load_config(None, ["encoder.layer=conformer", "decoder.layer=lightconv", "d_model=32", "ffn_dim=32"])
    model = build_model(cfg)
    names = {type(m).__name__ for m in model.encoder.modules()}
    assert "ConformerConvModule" in names and "LightweightConv" not in names
    names = {type(m).__name__ for m in model.decoder.modules()}
    assert "LightweightConv" in names and "ConformerConvModule" not in names


@pytest.mark.parametrize(("override", "key"), [
    ("encoder.conv.kernel_size=0", "encoder.conv.kernel_size"),
    ("decoder.conv.weight_dropout=1.5", "decoder.conv.weight_dropout"),
    ("encoder.conv.merge=average", "encoder.conv.merge"),
    ("encoder.conv.kernal_size=3", "encoder.conv.kernal_size"),
])
def test_bad_conv_options_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


@pytest.mark.parametrize(("overrides", "key"), [
    (["decoder.layer=lightconv", "decoder.conv.heads=3"], "decoder.conv.heads"),
    (["encoder.layer=lsra", "encoder.conv.lsra_split=0.3"], "encoder.conv.lsra_split"),
    (["encoder.layer=branchformer", "encoder.conv.cgmlp_dim=7"], "encoder.conv.cgmlp_dim"),
])
def test_conv_widths_are_checked_against_the_model(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, ["d_model=64", *overrides])


HYBRIDS = {"lfm2-style": ("shortconv", {1: "transformer"}), "mamba2+attention": ("mamba2", {0: "transformer"}),
           "attention+conformer": ("transformer", {1: "conformer"})}


@pytest.mark.parametrize("hybrid", list(HYBRIDS))
def test_per_layer_types_build_decode_and_pad_exactly(hybrid):
    """``layer_types`` mixes layer types in one stack: each layer is the one named, padded rows equal rows
    alone, and cached decoding (conv, SSM and KV states together) equals the full forward."""
    layer, types = HYBRIDS[hybrid]
    cfg = config(layer, {}, "decoder_lm", position="rope", norm="rmsnorm", activation="swiglu", qk_norm=True)
    cfg.decoder.layer_types = types
    model = build_model(cfg).eval()
    kinds = [type(layer.sublayers[0].body).__name__ for layer in model.decoder.layers]
    assert kinds[next(iter(types))] != kinds[1 - next(iter(types))]
    rows = [tokens(5), tokens(8)]
    batched = model(torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=0))
    for i, row in enumerate(rows):
        torch.testing.assert_close(batched[i, : len(row)], model(row[None])[0], atol=1e-5, rtol=1e-4)
    seq = tokens(2, 9)
    scorer = ModelScorer(model)
    stepped = step_through(scorer, scorer.init_state(), seq, prompt=4)
    torch.testing.assert_close(stepped, output_log_probs(model(seq)[:, 3:], 0), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("overrides", "key"), [
    (["decoder.layer_types={5: transformer}"], "layer_types"),
    (["decoder.layer_types={0: mamba3}"], r"layer_types\.0"),
    (["decoder.layer=mamba2", "decoder.ssm.head_dim=48"], r"decoder\.ssm\.head_dim"),
    (["decoder.layer_types={1: mamba2}", "decoder.ssm.groups=3"], r"decoder\.ssm\.groups"),
])
def test_bad_layer_types_and_ssm_options_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key):
        load_config(None, ["d_model=64", *overrides])
