"""GPT-2 end to end: padding outside the vocabulary, the original (prefix-less) layout, and the CLI.

The logit, greedy, cache and export-round-trip parity of GPT-2 run with the other decoder-only models in
test_llama_family.py and test_export_hf.py; here: what only GPT-2 needs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from conftest import TINY_TEXT, assert_one_line_error, run_entry  # noqa: E402
from interop.hf_tiny import hf_ids, padded_batch, save_tiny  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from hybridformer import convert, load_checkpoint  # noqa: E402
from hybridformer.errors import ConfigError  # noqa: E402

EOT = "<|endoftext|>"


def with_tokenizer(folder: Path) -> list[str]:
    """A word-level tokenizer over ids 0..94 plus GPT-2's one special token (id 95); returns its words."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted({w for line in TINY_TEXT for w in line.split()})
    words += [f"w{i}" for i in range(95 - len(words))]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)} | {EOT: 95}, unk_token=EOT))
    tokenizer.add_special_tokens([EOT])
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": EOT, "eos_token": EOT, "unk_token": EOT}))
    return words


def test_original_layout_without_the_transformer_prefix(tmp_path: Path) -> None:
    """The published GPT-2 folders hold GPT2Model's names (``h.0.attn.c_attn.weight``, ``wte.weight``)."""
    torch.manual_seed(0)
    hf, folder = save_tiny("gpt2", tmp_path / "hf")
    weights = load_file(folder / "model.safetensors")
    save_file({name.removeprefix("transformer."): t.contiguous() for name, t in weights.items()},
              str(folder / "model.safetensors"), metadata={"format": "pt"})
    ckpt = load_checkpoint(convert(folder, tmp_path / "ours"))
    tokens = padded_batch(96, ckpt.config.pad_id, [9, 4])
    with torch.no_grad():
        theirs = hf(hf_ids(tokens, 96), attention_mask=tokens.ne(ckpt.config.pad_id).long()).logits
        diff = (ckpt.model(tokens) - theirs)[tokens.ne(ckpt.config.pad_id)].abs().max()
    assert diff < 1e-4


def test_unsupported_fields_are_named(tmp_path: Path) -> None:
    _, folder = save_tiny("gpt2", tmp_path / "hf")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"scale_attn_by_inverse_layer_idx": True}))
    with pytest.raises(ConfigError, match="scale_attn_by_inverse_layer_idx"):
        convert(folder, tmp_path / "ours")
    result = run_entry("convert", folder, "--out", tmp_path / "ours")
    assert_one_line_error(result, 2, "scale_attn_by_inverse_layer_idx")


def test_cli_convert_generate_evaluate(tmp_path: Path) -> None:
    """convert, generate (greedy = transformers') and evaluate --metric ppl (= transformers' loss) through
    the real entry point: the pad outside the vocabulary never takes probability mass."""
    torch.manual_seed(0)
    hf, folder = save_tiny("gpt2", tmp_path / "hf")
    words = with_tokenizer(folder)
    result = run_entry("convert", folder, "--out", tmp_path / "ours")
    assert result.returncode == 0, result.stderr
    ckpt = load_checkpoint(tmp_path / "ours")
    assert (ckpt.config.vocab_size, ckpt.config.pad_id) == (96, 96)
    assert json.loads((tmp_path / "ours" / "tokenizer_config.json").read_text())["pad_token"] is None

    line = "the cat sat on the mat"
    run = run_entry("generate", tmp_path / "ours", "--input", "-", "--beam", "1", "--max-len-b", "12",
                    input=line + "\n")
    assert run.returncode == 0, run.stderr
    prompt = torch.tensor([[words.index(w) for w in line.split()]])
    with torch.no_grad():
        ref = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False,
                          pad_token_id=95, eos_token_id=95)[0, prompt.shape[1]:].tolist()
    ref = ref[: ref.index(95)] if 95 in ref else ref
    assert run.stdout.split() == [words[i] for i in ref]
    ct2 = run_entry("generate", tmp_path / "ours", "--input", "-", "--beam", "1", "--max-len-b", "12", "--engine",
                    "ct2", input=line + "\n")  # CTranslate2 has no pad to suppress either
    assert ct2.returncode == 0 and ct2.stdout == run.stdout, ct2.stderr[-2000:]

    text = tmp_path / "ref.txt"
    text.write_text("\n".join(TINY_TEXT) + "\n")
    run = run_entry("evaluate", tmp_path / "ours", "--ref", text, "--metric", "ppl", "--json")
    assert run.returncode == 0, run.stderr
    ids = torch.tensor([[words.index(w) for line in TINY_TEXT for w in line.split()]])
    with torch.no_grad():
        loss = hf(ids, labels=ids).loss.item()
    assert json.loads(run.stdout)["score"] == pytest.approx(math.exp(loss), rel=1e-4)


def test_fine_tuning_then_export(tmp_path: Path) -> None:
    """``train.init_from`` on a converted GPT-2 (BOS = EOS, pad outside the vocabulary), then back to transformers."""
    torch.manual_seed(0)
    _, folder = save_tiny("gpt2", tmp_path / "hf")
    with_tokenizer(folder)
    convert(folder, tmp_path / "ours")
    text = tmp_path / "train.txt"
    text.write_text("\n".join(TINY_TEXT * 20) + "\n")
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({
        "model": json.loads((tmp_path / "ours" / "config.json").read_text()),
        "data": {"train_file": str(text), "tokenizer": str(tmp_path / "ours" / "tokenizer.json"), "block_size": 16,
                 "max_tokens": 64},
        "train": {"max_steps": 4, "init_from": str(tmp_path / "ours"), "lr": 1e-3, "warmup_steps": 0,
                  "eval_every": 4, "label_smoothing": 0.1},
    }))
    run = run_entry("train", config, "--out", tmp_path / "run", timeout=300)
    assert run.returncode == 0, run.stderr
    best = tmp_path / "run" / "checkpoints" / "best"  # meta.json names no model type: the layout says GPT-2
    assert run_entry("export", best, "--to", "hf", "--out", tmp_path / "back").returncode == 0
    from transformers import AutoModelForCausalLM

    tuned = load_checkpoint(best)
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    tokens = torch.randint(0, 95, (2, 10))
    with torch.no_grad():
        assert (back(tokens).logits - tuned.model(tokens)).abs().max() < 1e-4


def test_pad_outside_the_vocabulary_in_any_model() -> None:
    """``pad_id == vocab_size``: zero embedding, no logit, masked as a key; beyond it is refused by name."""
    from hybridformer import ModelConfig, build_model

    cfg = ModelConfig(arch="decoder_lm", vocab_size=20, pad_id=20, d_model=16, heads=2, ffn_dim=32, dropout=0.0,
                      decoder={"layers": 1})
    model = build_model(cfg).eval()
    tokens = torch.tensor([[5, 6, 7, 20, 20], [5, 6, 7, 8, 9]])
    with torch.no_grad():
        logits = model(tokens)
        assert logits.shape == (2, 5, 20)
        assert torch.equal(model.embed(tokens)[0, 3:], torch.zeros(2, 16))
        assert torch.allclose(logits[0, :3], logits[1, :3], atol=1e-6)  # padding changes no real position
    with pytest.raises(ValueError, match="pad_id=21"):
        ModelConfig(arch="decoder_lm", vocab_size=20, pad_id=21)
