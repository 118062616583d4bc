"""Fine-tuning converted encoder-decoders with ``hybridformer train`` (``train.init_from``): the data
pipeline uses the checkpoint's own special ids (BART: <s>=0, <pad>=1, </s>=2, start = EOS; T5: pad = start
= 0, EOS 1, no BOS), the loss falls, and decoding afterwards starts from the right token: the CLI's output
equals transformers.generate on the fine-tune exported back to Hugging Face (which starts from its
config's ``decoder_start_token_id``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import run_entry

from hybridformer import convert, load_checkpoint
from hybridformer.interop import export
from hybridformer.train import read_metrics

transformers = pytest.importorskip("transformers")

WORDS = [f"w{i}" for i in range(4, 99)]


def tiny_folder(kind: str, folder: Path) -> dict[str, int]:
    """A tiny random BART or T5 saved with a word-level tokenizer; returns its special ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    torch.manual_seed(0)
    if kind == "bart":
        specials = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
        model = transformers.BartForConditionalGeneration(transformers.BartConfig(
            vocab_size=99, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=64))
        template, names = "<s> $A </s>", {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
    else:
        specials = {"<pad>": 0, "</s>": 1, "<unk>": 2, "w3": 3}
        model = transformers.T5ForConditionalGeneration(transformers.T5Config(
            vocab_size=99, d_model=32, d_ff=48, d_kv=8, num_layers=1, num_heads=4,
            relative_attention_num_buckets=8, relative_attention_max_distance=20))
        template, names = "$A </s>", {"eos_token": "</s>", "pad_token": "<pad>"}
    model.save_pretrained(folder)
    tokenizer = Tokenizer(models.WordLevel(specials | {w: int(w[1:]) for w in WORDS}, unk_token="<unk>"))
    tokenizer.add_special_tokens([t for t in specials if t.startswith("<")])
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, specials[t]) for t in ("<s>", "</s>") if t in template])
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(names | {"unk_token": "<unk>"}))
    return specials


def write_task(directory: Path) -> dict[str, str]:
    """A small copy-the-reverse task over the words: parallel train/valid files."""
    gen = torch.Generator().manual_seed(1)
    files = {}
    for split, count in (("train", 64), ("valid", 8)):
        rows = [[WORDS[i] for i in torch.randint(0, 20, (5,), generator=gen)] for _ in range(count)]
        for side, lines in (("src", [" ".join(r) for r in rows]), ("tgt", [" ".join(reversed(r)) for r in rows])):
            path = directory / f"{split}.{side}"
            path.write_text("\n".join(lines) + "\n")
            files[f"{split}_{side}"] = str(path)
    return files


@pytest.mark.parametrize(("kind", "start"), [("bart", 2), ("t5", 0)])
def test_fine_tune_a_converted_seq2seq_model(kind: str, start: int, tmp_path: Path) -> None:
    tiny_folder(kind, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "ours")
    converted = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert converted["decoder_start_id"] == start
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({
        "model": converted | {"dropout": 0.0},
        "data": {**write_task(tmp_path), "tokenizer": str(tmp_path / "ours" / "tokenizer.json"), "max_tokens": 256},
        "train": {"max_steps": 16, "init_from": str(tmp_path / "ours"), "lr": 3e-3, "warmup_steps": 0,
                  "eval_every": 8, "log_every": 1, "label_smoothing": 0.1},
    }))
    run = run_entry("train", config, "--out", tmp_path / "run", timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    metrics = read_metrics(tmp_path / "run" / "metrics.jsonl")
    train = [e["loss"] for e in metrics if e["kind"] == "train"]
    valid = [e["loss"] for e in metrics if e["kind"] == "valid"]
    assert len(train) == 16 and sum(train[-4:]) < sum(train[:4]) and valid[-1] < valid[0]

    best = tmp_path / "run" / "checkpoints" / "best"
    tuned = load_checkpoint(best)
    assert tuned.config.start_id == start and tuned.config.pad_id == converted["pad_id"]
    line = (tmp_path / "valid.src").read_text().splitlines()[0]
    out = run_entry("generate", best, "--input", "-", "--beam", "1", "--max-len-a", "0", "--max-len-b", "12",
                    input=line + "\n")
    assert out.returncode == 0, out.stderr
    export(best, tmp_path / "back", to="hf")  # meta.json of a fine-tune names no type: its layout does
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "back").eval()
    assert hf.generation_config.decoder_start_token_id == start
    src = torch.tensor([tuned.tokenizer.encode(line).ids])
    cfg = tuned.config
    ref = hf.generate(input_ids=src, max_new_tokens=12, do_sample=False, num_beams=1, min_length=0,
                      suppress_tokens=[cfg.pad_id], forced_eos_token_id=None, forced_bos_token_id=None,
                      eos_token_id=cfg.eos_id)[0, 1:].tolist()
    ref = ref[: ref.index(cfg.eos_id)] if cfg.eos_id in ref else ref
    assert out.stdout.split() == [tuned.tokenizer.id_to_token(i) for i in ref if tuned.tokenizer.id_to_token(i)
                                  not in ("<s>", "</s>", "<pad>", "<unk>")]
