"""A converted model is an ordinary checkpoint: every command runs on it (generate incl. --chat, evaluate,
quantize, prune with GQA, merge, longify), here on a tiny Llama with a tokenizer and a chat template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from conftest import TINY_TEXT, run_cli  # noqa: E402
from interop.hf_tiny import save_tiny  # noqa: E402

from hybridformer import convert, load_checkpoint  # noqa: E402

TEMPLATE = ("{% for m in messages %}{{ bos_token }}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}{% endfor %}"
            "{% if add_generation_prompt %}{{ bos_token }}assistant:{% endif %}")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("commands")
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer, tokenizer.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=90, special_tokens=["<unk>", "<s>", "</s>"])
    tokenizer.train_from_iterator(TINY_TEXT, trainer)
    _, folder = save_tiny("llama", root / "hf", rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "chat_template": TEMPLATE}))
    return convert(folder, root / "ckpt")


def test_special_tokens_and_template_travel(converted: Path) -> None:
    ckpt = load_checkpoint(converted)
    assert (ckpt.config.bos_id, ckpt.config.eos_id, ckpt.config.pad_id) == (1, 2, 0)  # pad = <unk>, not EOS
    assert json.loads((converted / "tokenizer_config.json").read_text())["chat_template"] == TEMPLATE


def test_every_command_runs(converted: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    text = tmp_path / "text.txt"
    text.write_text("\n".join(TINY_TEXT) + "\n")

    def ok(*args) -> str:
        code, out, err = run_cli(monkeypatch, capsys, *args)
        assert code == 0, err
        return out

    for options in (["--beam", "1"], ["--beam", "3"], ["--sample", "--seed", "1"], ["--beam", "1", "--chat"]):
        lines = ok("generate", converted, "--input", text, "--max-len-b", "5", *options).splitlines()
        assert len(lines) == len(TINY_TEXT)
    assert "ppl" in ok("evaluate", converted, "--ref", text, "--metric", "ppl").lower()
    ok("quantize", converted, "--out", tmp_path / "int8")
    ok("prune", converted, "--heads", "0.5", "--data", text, "--out", tmp_path / "pruned")
    ok("merge", "--method", "linear", converted, converted, "--out", tmp_path / "merged")
    ok("longify", converted, "--attention", "sliding_window:window=4", "--rope-scaling", "yarn:2", "--out",
       tmp_path / "long")
    for result in ("int8", "pruned", "merged", "long"):
        assert load_checkpoint(tmp_path / result).config.arch == "decoder_lm"


def test_fine_tuning_starts_from_the_converted_weights(converted: Path, tmp_path: Path) -> None:
    from hybridformer import train
    from hybridformer.config import ExperimentConfig, parse_config

    text = tmp_path / "train.txt"
    text.write_text("\n".join(TINY_TEXT * 20) + "\n")
    model = json.loads((converted / "config.json").read_text())
    config = parse_config(ExperimentConfig, {
        "model": model,
        "data": {"train_file": str(text), "tokenizer": str(converted / "tokenizer.json"), "block_size": 16,
                 "max_tokens": 64},
        "train": {"max_steps": 2, "init_from": str(converted), "lr": 1e-9, "warmup_steps": 0, "eval_every": 2,
                  "label_smoothing": 0.0},
    })
    tuned = load_checkpoint(train(config, tmp_path / "run").checkpoint)
    start = load_checkpoint(converted)
    for name, tensor in start.model.state_dict().items():
        assert torch.allclose(tensor, tuned.model.state_dict()[name], atol=1e-5), name
