"""Models built from config: caches equal full forwards, padding and causality hold, options wire up."""

import pytest
import torch

from hybridformer import ModelConfig, build_model
from hybridformer.cache import StaticKV
from hybridformer.decoding import ModelScorer, greedy_search, output_log_probs

POSITIONS = ["none", "sinusoidal", "learned", "rope", "alibi", "t5"]
V = 50


def tiny(arch="encoder_decoder", **overrides) -> ModelConfig:
    base = dict(arch=arch, vocab_size=V, d_model=16, heads=4, ffn_dim=32, dropout=0.0,
                encoder={"layers": 2}, decoder={"layers": 2})
    return ModelConfig(**(base | overrides))


def tokens(batch, length):
    return torch.randint(3, V, (batch, length))


def _incremental(model, scorer_input, tgt):
    scorer = ModelScorer(model)
    state = scorer.init_state(scorer_input)
    steps = []
    for t in range(tgt.shape[1]):
        log_probs, state = scorer.step(state, tgt[:, t : t + 1])
        steps.append(log_probs)
    return torch.stack(steps, 1)


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_seq2seq_cached_decoding_equals_full_forward(position, kv_heads):
    model = build_model(tiny(position=position, kv_heads=kv_heads)).eval()
    src, tgt = tokens(2, 7), tokens(2, 6)
    src[1, 5:] = 0  # padded source
    full = output_log_probs(model(src, tgt), 0)
    torch.testing.assert_close(_incremental(model, src, tgt), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("kv_heads", [4, 2])
def test_lm_cached_decoding_equals_full_forward(position, kv_heads):
    model = build_model(tiny("decoder_lm", position=position, kv_heads=kv_heads)).eval()
    seq = tokens(2, 9)
    full = output_log_probs(model(seq), 0)
    # a prompt of 4 tokens in one call, then one token at a time
    scorer = ModelScorer(model)
    state = scorer.init_state(None)
    first, state = scorer.step(state, seq[:, :4])
    rest = [first]
    for t in range(4, 9):
        log_probs, state = scorer.step(state, seq[:, t : t + 1])
        rest.append(log_probs)
    torch.testing.assert_close(torch.stack(rest, 1), full[:, 3:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("position", POSITIONS)
def test_padding_does_not_change_real_positions(position):
    model = build_model(tiny(position=position, kv_heads=2)).eval()
    src, tgt = tokens(1, 5), tokens(1, 4)
    alone = model(src, tgt)
    src_padded = torch.cat([src, torch.zeros(1, 3, dtype=torch.long)], 1)
    tgt_padded = torch.cat([tgt, torch.zeros(1, 2, dtype=torch.long)], 1)
    other = tokens(1, 8), tokens(1, 6)
    batch = model(torch.cat([src_padded, other[0]]), torch.cat([tgt_padded, other[1]]))
    torch.testing.assert_close(batch[:1, :4], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("position", POSITIONS)
def test_causal_output_has_no_gradient_from_the_future(position):
    model = build_model(tiny("decoder_lm", position=position, kv_heads=2)).eval()
    embedded = model.embed(tokens(1, 8)).detach().requires_grad_(True)
    out = model.output(model.decoder(embedded))
    out[0, 3].sum().backward()
    assert embedded.grad[0, 4:].abs().max() == 0
    assert embedded.grad[0, :4].abs().max() > 0


def test_greedy_search_stops_at_eos_and_matches_argmax_of_full_forward():
    model = build_model(tiny(position="rope")).eval()
    src = tokens(3, 6)
    scorer = ModelScorer(model)
    out = greedy_search(scorer, scorer.init_state(src), torch.full((3, 1), 1), eos_id=2, max_new_tokens=8)
    for row, hyp in enumerate(out):
        prefix = torch.tensor([[1] + hyp])
        logits = model(src[row : row + 1], prefix)
        assert logits[0, :-1].argmax(-1).tolist() == hyp  # every chosen token is the argmax
        assert len(hyp) == 8 or logits[0, -1].argmax().item() == 2  # ended by EOS or by the limit


@pytest.mark.parametrize("activation", ["relu", "gelu", "swiglu", "geglu"])
@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_ffn_and_norm_options_build_and_run(activation, norm):
    model = build_model(tiny(activation=activation, norm=norm))
    logits = model(tokens(2, 5), tokens(2, 4))
    assert logits.shape == (2, 4, V) and torch.isfinite(logits).all()


@pytest.mark.parametrize("residual,placement", [("deepnet", "post"), ("rezero", "pre"), ("standard", "post")])
def test_residual_schemes(residual, placement):
    model = build_model(tiny(residual=residual, norm_placement=placement,
                             encoder={"layers": 6}, decoder={"layers": 6}))
    loss = model(tokens(2, 5), tokens(2, 4)).logsumexp(-1).mean()
    loss.backward()
    assert torch.isfinite(loss)
    if residual == "rezero":  # the stack starts as the identity: every residual gate is zero
        gates = [m.gate for m in model.modules() if getattr(m, "gate", None) is not None]
        assert gates and all(g.item() == 0 for g in gates)
    if residual == "deepnet":  # α > 1 up-weights the skip path
        assert model.encoder.layers[0].sublayers[0].alpha > 1


def test_tied_and_shared_embeddings():
    model = build_model(tiny())
    assert model.output.weight is model.tgt_embed.weight and model.src_embed is model.tgt_embed
    untied = build_model(tiny(tie_embeddings=False, share_embeddings=False))
    assert untied.output.weight is not untied.tgt_embed.weight and untied.src_embed is not untied.tgt_embed


def test_embedding_scale_and_padding_row():
    model = build_model(tiny(embed_scale=True))
    assert model.src_embed.scale == pytest.approx(4.0)
    assert model.src_embed.weight[0].abs().sum() == 0


def test_classifier_pools_only_real_tokens():
    model = build_model(tiny("encoder_classifier", num_classes=3, position="alibi")).eval()
    seq = tokens(1, 6)
    padded = torch.cat([seq, torch.zeros(1, 4, dtype=torch.long)], 1)
    torch.testing.assert_close(model(seq), model(padded), atol=1e-5, rtol=1e-5)
    assert model(seq).shape == (1, 3)


def test_learned_positions_beyond_the_table_is_a_clear_error():
    model = build_model(tiny("decoder_lm", position="learned", max_positions=8))
    with pytest.raises(ValueError, match="max_positions=8"):
        model(tokens(1, 9))


@pytest.mark.parametrize("rows", [(1, 1), (2, 3), (4, 5)])  # 1 row, 2-16 rows, more: three GEMM layouts
def test_vocab_logits_layouts_equal_the_module(rows):
    from hybridformer.cache import DecodingCache
    from hybridformer.models import vocab_logits

    output = torch.nn.Linear(6, 11, bias=False)
    h = torch.randn(*rows, 6)
    with torch.no_grad():
        torch.testing.assert_close(vocab_logits(output, h, DecodingCache()), output(h))
        torch.testing.assert_close(vocab_logits(output, h, DecodingCache(), logits_to_keep=1), output(h[:, -1:]))
    assert vocab_logits(output, h, None).requires_grad  # training and full forwards: the module itself


def test_vocab_logits_transposed_weight_is_shared_across_sessions_until_the_weight_changes():
    from hybridformer.cache import DecodingCache
    from hybridformer.models import vocab_logits

    output = torch.nn.Linear(6, 11, bias=False)
    h, shared = torch.randn(1, 1, 6), {}
    with torch.no_grad():
        torch.testing.assert_close(vocab_logits(output, h, DecodingCache(shared)), output(h))
        made = shared[output]
        assert torch.equal(made.weight, output.weight.t())
        vocab_logits(output, h, DecodingCache(shared))  # a second session reuses the transpose
        assert shared[output] is made
        output.weight.mul_(2.0)  # an in-place update (optimizer step) invalidates it
        torch.testing.assert_close(vocab_logits(output, h, DecodingCache(shared)), output(h))
        assert shared[output] is not made


@pytest.mark.parametrize("reorder", ["beams", "drop", "shuffle"])
def test_cached_cross_attention_follows_beam_reorders(reorder):
    """Beams of one sentence share one copy of the source's keys (folded into queries), also after a
    finished sentence leaves the batch ("drop"); any other reorder gathers rows. Either way each row's
    next-token scores equal a full forward of that row."""
    torch.manual_seed(0)
    model = build_model(tiny(kv_heads=2)).eval()
    src = tokens(3, 6)
    src[1, 4:] = 0  # padding in one source
    beams = 2
    rows = torch.tensor([2, 0, 0, 1, 2, 1]) if reorder == "shuffle" else torch.arange(3).repeat_interleave(beams)
    first = tokens(3, 1)
    tgt = torch.cat([first[rows], tokens(len(rows), 3)], 1)
    scorer = ModelScorer(model)
    state = scorer.init_state(src)
    _, state = scorer.step(state, first)  # the first token is fed once per sentence, as beam search does
    sources = {id(kv): kv.keys for kv in state.cache.values() if isinstance(kv, StaticKV)}
    state = scorer.reorder(state, rows)
    for t in range(1, 4):
        sentences = len(rows) // beams
        if reorder == "shuffle":
            perm = torch.randperm(len(rows))
        else:  # beams move within their sentence; "drop" also removes the middle sentence at step 2
            perm = (torch.randperm(beams) + torch.arange(sentences)[:, None] * beams).reshape(-1)
            if reorder == "drop" and t == 2:
                perm = torch.cat([perm[:beams], perm[2 * beams:]])
        state = scorer.reorder(state, perm)
        rows, tgt = rows[perm], tgt[perm]
        log_probs, state = scorer.step(state, tgt[:, t : t + 1])
        with torch.no_grad():
            full = output_log_probs(model(src[rows], tgt[:, : t + 1]), model.pad_id)
        torch.testing.assert_close(log_probs, full[:, t], atol=1e-5, rtol=1e-5)
    states = [kv for kv in state.cache.values() if isinstance(kv, StaticKV)]
    assert {kv.group for kv in states} == ({1} if reorder == "shuffle" else {beams})
    assert {len(kv.keys) for kv in states} == {len(rows) // kv.group for kv in states}  # one copy per sentence
    if reorder == "beams":  # beams moving within their sentence never gather the source's keys
        assert all(kv.keys is sources[id(kv)] for kv in states)
