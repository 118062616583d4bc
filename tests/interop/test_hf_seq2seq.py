"""BART, mBART, Marian, T5 v1.0/v1.1 converted from tiny random transformers models: exact parity."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_entry

from hybridformer import load_checkpoint
from hybridformer.decoding.greedy import greedy_search
from hybridformer.decoding.scorer import ModelScorer, output_log_probs
from hybridformer.errors import ConfigError
from hybridformer.interop import convert
from hybridformer.interop.hf import ARCHITECTURES

transformers = pytest.importorskip("transformers")

COMMON = dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
              decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64,
              dropout=0.0)
T5_COMMON = dict(vocab_size=99, d_model=32, d_ff=37, num_layers=2, num_heads=4, dropout_rate=0.0,
                 relative_attention_num_buckets=8, relative_attention_max_distance=20)


def hf_model(kind: str):
    torch.manual_seed(0)
    t = transformers
    if kind == "bart":
        model = t.BartForConditionalGeneration(t.BartConfig(**COMMON))
    elif kind == "mbart":
        model = t.MBartForConditionalGeneration(t.MBartConfig(scale_embedding=True, **COMMON))
    elif kind == "marian":
        model = t.MarianMTModel(t.MarianConfig(**COMMON, pad_token_id=98, decoder_start_token_id=98, eos_token_id=0,
                                               activation_function="swish", scale_embedding=True))
    elif kind == "t5":
        model = t.T5ForConditionalGeneration(t.T5Config(d_kv=8, **T5_COMMON))
    else:  # t5 v1.1: gated tanh-GELU, a head width apart from d_model / heads, an untied head, no output scale
        model = t.T5ForConditionalGeneration(t.T5Config(d_kv=6, feed_forward_proj="gated-gelu",
                                                        tie_word_embeddings=False, **T5_COMMON))
    with torch.no_grad():  # make the quirks visible: nonzero logits bias, non-trivial norms
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias.normal_()
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.normal_(1.0, 0.2)
                module.bias.normal_(0.0, 0.2)
        if kind == "t5v11":
            model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight))
    return model.eval()


KINDS = ["bart", "mbart", "marian", "t5", "t5v11"]


@pytest.fixture(scope="module", params=KINDS)
def pair(request, tmp_path_factory):
    """(transformers model, our converted checkpoint) of one architecture."""
    folder = tmp_path_factory.mktemp(request.param)
    hf = hf_model(request.param)
    hf.save_pretrained(folder / "hf")
    if request.param == "t5v11":  # transformers 5 reloads an untied v1.1 head from the file
        hf = transformers.T5ForConditionalGeneration.from_pretrained(folder / "hf").eval()
    return hf, load_checkpoint(convert(folder / "hf", folder / "ours"))


def batch(cfg, lengths: list[int], seed: int) -> torch.Tensor:
    """Right-padded random tokens, none of them a special id."""
    gen = torch.Generator().manual_seed(seed)
    out = torch.full((len(lengths), max(lengths)), cfg.pad_id, dtype=torch.long)
    for row, n in enumerate(lengths):
        out[row, :n] = torch.randint(3, cfg.vocab_size - 2, (n,), generator=gen)
    return out


def test_logits_match_transformers_on_a_padded_batch(pair):
    hf, ckpt = pair
    cfg = ckpt.config
    src = batch(cfg, [7, 4, 9], 0)
    tgt = torch.cat([torch.full((3, 1), cfg.start_id), batch(cfg, [5, 3, 6], 1)], 1)
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=src.ne(cfg.pad_id), decoder_input_ids=tgt).logits
        got = ckpt.model(src, tgt)
    real = tgt.ne(cfg.pad_id)
    real[:, 0] = True
    assert (ref - got)[real].abs().max().item() < 1e-4


def plain_search(hf) -> None:
    """transformers' search without the model's forced BOS/EOS and banned words: the search we compare with."""
    hf.generation_config.forced_eos_token_id = hf.generation_config.forced_bos_token_id = None
    hf.generation_config.bad_words_ids = None


def test_greedy_tokens_match_transformers(pair):
    hf, ckpt = pair
    cfg = ckpt.config
    src = batch(cfg, [6, 9], 2)
    plain_search(hf)
    ref = hf.generate(input_ids=src, attention_mask=src.ne(cfg.pad_id), max_new_tokens=20, do_sample=False,
                      num_beams=1, min_length=0, suppress_tokens=[cfg.pad_id], eos_token_id=cfg.eos_id,
                      decoder_start_token_id=cfg.start_id, pad_token_id=cfg.pad_id)
    scorer = ModelScorer(ckpt.model)
    prefix = torch.full((2, 1), cfg.start_id)
    ours = greedy_search(scorer, scorer.init_state(src), prefix, eos_id=cfg.eos_id, max_new_tokens=20)
    for row, tokens in zip(ref.tolist(), ours, strict=True):
        expected = row[1:]
        expected = expected[: expected.index(cfg.eos_id)] if cfg.eos_id in expected else expected
        assert tokens == expected
    assert max(len(t) for t in ours) >= 10  # the comparison covers real decoding, not an immediate EOS


def test_cached_decoding_equals_the_full_forward(pair):
    _, ckpt = pair
    model, cfg = ckpt.model, ckpt.config
    src = batch(cfg, [8, 5], 3)
    tgt = torch.cat([torch.full((2, 1), cfg.start_id), batch(cfg, [6, 6], 4)], 1)
    scorer = ModelScorer(model)
    state = scorer.init_state(src)
    with torch.no_grad():
        full = model(src, tgt)
        keep = torch.arange(cfg.vocab_size) != cfg.pad_id
        for step in range(tgt.shape[1]):
            log_probs, state = scorer.step(state, tgt[:, step: step + 1])
            expected = output_log_probs(full[:, step], cfg.pad_id)
            assert torch.allclose(log_probs[:, keep], expected[:, keep], atol=1e-4)


@pytest.mark.parametrize(("kind", "field", "value"), [
    ("bart", "decoder_attention_heads", 2), ("bart", "activation_function", "quick_gelu"),
    ("marian", "share_encoder_decoder_embeddings", False), ("t5", "feed_forward_proj", "gated-relu"),
])
def test_unsupported_fields_are_one_line_errors_naming_them(tmp_path, kind, field, value):
    model = hf_model(kind)
    model.save_pretrained(tmp_path / "hf")
    path = tmp_path / "hf" / "config.json"
    config = json.loads(path.read_text())
    config[field] = value
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=field) as info:
        convert(tmp_path / "hf", tmp_path / "out")
    assert "\n" not in str(info.value)


def test_export_round_trip_gives_identical_tensors_and_logits(pair, tmp_path):
    hf, ckpt = pair
    from safetensors.torch import load_file

    from hybridformer.interop.export import export_hf

    out = export_hf(ckpt.path, tmp_path / "back")
    original, exported = load_file(ckpt.path.parent / "hf" / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(exported) <= set(original)
    unused = ARCHITECTURES[ckpt.meta["model_type"]].unused
    assert all(name.startswith(unused) for name in set(original) - set(exported))  # only tied copies left out
    for name, tensor in exported.items():
        assert torch.equal(tensor, original[name]), name
    reloaded = transformers.AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    cfg = ckpt.config
    src = batch(cfg, [5, 7], 5)
    tgt = torch.cat([torch.full((2, 1), cfg.start_id), batch(cfg, [4, 4], 6)], 1)
    with torch.no_grad():
        kwargs = dict(input_ids=src, attention_mask=src.ne(cfg.pad_id), decoder_input_ids=tgt)
        assert torch.equal(reloaded(**kwargs).logits, hf(**kwargs).logits)


def test_export_refuses_what_hugging_face_cannot_hold(pair, tmp_path):
    _, ckpt = pair
    from hybridformer import save_checkpoint
    from hybridformer.interop.export import export_hf

    changed = ckpt.config.model_copy(update={"residual": "rezero"})
    copy = save_checkpoint(tmp_path / "changed", ckpt.model, changed, ckpt.tokenizer,
                           meta=json.loads((ckpt.path / "meta.json").read_text()))
    with pytest.raises(ConfigError, match="residual='rezero'"):
        export_hf(copy, tmp_path / "out")


def test_generate_cli_on_a_converted_bart_matches_transformers(tmp_path):
    """End to end: a BART folder with its tokenizer -> `hybridformer convert` -> `hybridformer generate`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    hf = hf_model("bart")
    hf.save_pretrained(tmp_path / "hf")
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3} | {f"w{i}": i for i in range(4, 99)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0),
                                                                                                  ("</s>", 2)])
    tokenizer.save(str(tmp_path / "hf" / "tokenizer.json"))
    (tmp_path / "hf" / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}))
    assert run_entry("convert", tmp_path / "hf", "--out", tmp_path / "ours").returncode == 0
    line = "w5 w17 w33 w8 w61 w40"
    run = run_entry("generate", tmp_path / "ours", "--input", "-", "--beam", "1", input=line + "\n")
    assert run.returncode == 0, run.stderr
    src = torch.tensor([tokenizer.encode(line).ids])
    ref = hf.generate(input_ids=src, max_new_tokens=40, do_sample=False, num_beams=1, suppress_tokens=[1],
                      forced_eos_token_id=None, decoder_start_token_id=2, eos_token_id=2)[0, 1:].tolist()
    ref = ref[: ref.index(2)] if 2 in ref else ref
    ours = run.stdout.split()
    assert ours and ours == [f"w{i}" if i > 3 else "<unk>" for i in ref][: len(ours)]


def test_beam_search_matches_transformers(pair):
    from hybridformer.decoding.beam import beam_search

    hf, ckpt = pair
    cfg = ckpt.config
    src = batch(cfg, [6, 9], 2)
    plain_search(hf)
    ref = hf.generate(input_ids=src, attention_mask=src.ne(cfg.pad_id), max_new_tokens=12, num_beams=3,
                      do_sample=False, early_stopping=True, length_penalty=1.0, suppress_tokens=[cfg.pad_id],
                      decoder_start_token_id=cfg.start_id, eos_token_id=cfg.eos_id, pad_token_id=cfg.pad_id)
    scorer = ModelScorer(ckpt.model)
    hyps = beam_search(scorer, scorer.init_state(src), torch.full((2, 1), cfg.start_id), beam=3, max_len=12,
                       lenpen=1.0, eos_id=cfg.eos_id)
    for row, hyp in zip(ref[:, 1:].tolist(), hyps, strict=True):
        assert hyp.tokens == (row[: row.index(cfg.eos_id)] if cfg.eos_id in row else row)
