"""A converted model is an ordinary checkpoint: every command runs on it (generate incl. --chat, evaluate,
quantize, prune with GQA, merge, longify, train with init_from), here on tiny Llama, LFM2 (short-convolution layers
around an attention layer), Gemma 3, Qwen3 and Phi-3 models with a tokenizer and a chat template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from conftest import TINY_TEXT, run_cli  # noqa: E402
from interop.hf_tiny import CHAT_TEMPLATE, converted_tiny  # noqa: E402

from hybridformer import load_checkpoint  # noqa: E402

TEMPLATE = CHAT_TEMPLATE


@pytest.fixture(scope="module", params=["llama", "lfm2", "gemma3", "qwen3", "phi3"])
def converted(request, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return converted_tiny(tmp_path_factory.mktemp("commands"), TINY_TEXT, request.param)


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


def test_chat_fine_tuning_through_the_cli(converted: Path, tmp_path: Path, request) -> None:
    """An instruct fine-tune recipe names only what changes: the model section and the tokenizer come from
    ``train.init_from``, JSONL pairs become conversations in the model's chat template (loss on the answers),
    and the result
    keeps the template, so ``generate --chat`` prompts it exactly as it was trained."""
    if request.node.callspec.params["converted"] not in ("llama", "gemma3"):
        pytest.skip("the same path as Llama's and Gemma 3's (the slowest test here: two subprocesses)")
    import yaml
    from conftest import assert_one_line_error, run_entry

    from hybridformer.train.setup import load_recipe, read_raw

    records = [{"q": {"text": ["big", "cat"]}, "a": ["a cat", "is big"]}, {"q": {"text": ["old"]}, "a": ["dog"]}]
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records * 10) + "\n")
    recipe = tmp_path / "chat.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"dropout": 0.25},
        "data": {"format": "jsonl", "chat": True, "train_file": str(data), "valid_file": str(data),
                 "src_field": "q.text", "tgt_field": "a.0", "block_size": 48, "max_tokens": 96},
        "train": {"init_from": str(converted), "max_steps": 2, "eval_every": 2, "warmup_steps": 0}}))

    cfg = load_recipe(recipe)
    saved = json.loads((converted / "config.json").read_text())
    assert cfg.model.model_dump(mode="json") == {**saved, "dropout": 0.25}
    assert cfg.data.tokenizer == str(converted / "tokenizer.json")
    assert read_raw(cfg.data, lm=True).train[:2] == [  # the answers marked: the loss falls on them only
        [("<s>user: big cat</s><s>assistant:", False), (" a cat</s>", True)],
        [("<s>user: old</s><s>assistant:", False), (" dog</s>", True)]]

    result = run_entry("train", recipe, "--out", tmp_path / "run", "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    tuned = tmp_path / "run" / "checkpoints" / "best"
    assert json.loads((tuned / "tokenizer_config.json").read_text())["chat_template"] == TEMPLATE
    answer = run_entry("generate", tuned, "--input", "-", "--chat", "--beam", "1", "--max-len-b", "4",
                       input="big cat\n")
    assert answer.returncode == 0 and len(answer.stdout.splitlines()) == 1, answer.stderr[-2000:]

    bad = run_entry("train", recipe, "--out", tmp_path / "bad", "--set", "model.arch=encoder_decoder")
    assert_one_line_error(bad, 2, "data.chat", "decoder_lm")
    missing = run_entry("train", recipe, "--out", tmp_path / "bad", "--set", f"train.init_from={tmp_path}/nowhere")
    assert_one_line_error(missing, 2, "train.init_from", "nowhere")


def test_convert_and_chat_through_the_entry_point(converted: Path, tmp_path: Path, request) -> None:
    """``hybridformer convert`` then ``generate --chat`` as a user runs them, on Gemma 3: the answer is the API's."""
    from conftest import run_entry

    from hybridformer import generate

    if request.node.callspec.params["converted"] != "gemma3":
        pytest.skip("one new architecture through the entry point is enough: the code path is shared")
    result = run_entry("convert", converted.parent / "hf", "--out", tmp_path / "ckpt")
    assert result.returncode == 0, result.stderr[-2000:]
    answer = run_entry("generate", tmp_path / "ckpt", "--input", "-", "--chat", "--beam", "1", "--max-len-b", "6",
                       input="big cat\n")
    assert answer.returncode == 0, answer.stderr[-2000:]
    expected = list(generate(converted, ["big cat"], chat=True, beam=1, max_len_b=6))
    assert answer.stdout.splitlines() == expected


def test_serve_answers_as_generate_does(converted: Path, request) -> None:
    """``serve`` batches a converted Gemma 3's prompts of different lengths and answers each as ``generate`` does."""
    if request.node.callspec.params["converted"] != "gemma3":
        pytest.skip("the served decoder is the same for every architecture: run on the one with the most quirks")
    from serve.test_server import post, running_server

    from hybridformer import generate

    lines, options = ["big cat", "the old dog ran in the park", "we"], {"beam": 1, "max_len_a": 0.0, "max_len_b": 8}
    expected = list(generate(converted, lines, **options))
    with running_server(converted, max_wait_ms=50) as url:
        assert post(url, "/v1/generate", {"inputs": lines} | options).json()["outputs"] == expected
