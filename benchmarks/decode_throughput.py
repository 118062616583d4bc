"""Generation throughput: hybridformer's cached greedy / beam search vs HuggingFace ``generate``.

Both models are randomly initialised at the same size (issue 9's default: seq2seq, d_model 256,
4 heads, 3+3 layers, FFN 1024, vocab 8000), decode a batch of 8 sources of 32 tokens for exactly
64 new tokens (EOS is suppressed until then on both sides, as HF's ``min_new_tokens`` does), and
are timed interleaved, median of ``--repeats``. Needs ``transformers`` (the ``bench`` extra); a
missing peer is reported as skipped.

    python benchmarks/decode_throughput.py [--repeats 5] [--threads N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from hybridformer import ModelConfig, build_model
from hybridformer.decoding import ModelScorer, beam_search, greedy_search

D_MODEL, HEADS, LAYERS, FFN, VOCAB = 256, 4, 3, 1024, 8000
BATCH, SRC_LEN, NEW_TOKENS = 8, 32, 64
EOS = 2


class NoEarlyEOS:
    """Wrap a Scorer so EOS is (nearly) impossible: every sentence runs to its length budget."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def init_state(self, src):
        return self.inner.init_state(src)

    def step(self, state, prev_tokens):
        log_probs, state = self.inner.step(state, prev_tokens)
        log_probs[:, EOS] = -1e4  # finite: a forced EOS at the budget still ends the hypothesis
        return log_probs, state

    def reorder(self, state, index):
        return self.inner.reorder(state, index)


def ours(src: torch.Tensor):
    cfg = ModelConfig(vocab_size=VOCAB, d_model=D_MODEL, heads=HEADS, ffn_dim=FFN, dropout=0.0,
                      encoder={"layers": LAYERS}, decoder={"layers": LAYERS})
    model = build_model(cfg).eval()
    scorer = NoEarlyEOS(ModelScorer(model))
    bos = torch.full((BATCH, 1), cfg.bos_id)
    params = sum(p.numel() for p in model.parameters())

    def greedy():
        out = greedy_search(scorer, scorer.init_state(src), bos, eos_id=EOS, max_new_tokens=NEW_TOKENS)
        assert all(len(o) == NEW_TOKENS for o in out)

    def beam5():
        out = beam_search(scorer, scorer.init_state(src), bos, beam=5, eos_id=EOS, max_len=NEW_TOKENS)
        assert all(len(h.tokens) == NEW_TOKENS for h in out)

    return params, greedy, beam5


def huggingface(src: torch.Tensor):
    from transformers import BartConfig, BartForConditionalGeneration

    cfg = BartConfig(vocab_size=VOCAB, d_model=D_MODEL, encoder_layers=LAYERS, decoder_layers=LAYERS,
                     encoder_attention_heads=HEADS, decoder_attention_heads=HEADS, encoder_ffn_dim=FFN,
                     decoder_ffn_dim=FFN, max_position_embeddings=1024, dropout=0.0, attention_dropout=0.0,
                     activation_dropout=0.0, pad_token_id=0, bos_token_id=1, eos_token_id=EOS,
                     decoder_start_token_id=1, forced_bos_token_id=None, forced_eos_token_id=None)
    model = BartForConditionalGeneration(cfg).eval()
    params = sum(p.numel() for p in model.parameters())
    mask = torch.ones_like(src)

    def run(beams: int):
        out = model.generate(input_ids=src, attention_mask=mask, num_beams=beams, do_sample=False,
                             max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, use_cache=True,
                             early_stopping=False, no_repeat_ngram_size=0, length_penalty=1.0)
        assert out.shape[1] >= NEW_TOKENS

    return params, (lambda: run(1)), (lambda: run(5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    src = torch.randint(3, VOCAB, (BATCH, SRC_LEN))
    systems = {"hybridformer": ours(src)}
    try:
        systems["hf-bart"] = huggingface(src)
    except ImportError as exc:
        print(f"hf-bart: skipped ({exc})")
    runs = {f"{name}/{kind}": fn for name, (_, greedy, beam5) in systems.items()
            for kind, fn in (("greedy", greedy), ("beam5", beam5))}
    with torch.no_grad():
        for fn in runs.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {key: [] for key in runs}
        for _ in range(args.repeats):  # interleaved, so load changes hit every system alike
            for key, fn in runs.items():
                start = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - start)
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
              "params": {name: p for name, (p, _, _) in systems.items()},
              "tokens_per_s": {k: BATCH * NEW_TOKENS / statistics.median(v) for k, v in times.items()},
              "ms_per_step": {k: 1000 * statistics.median(v) / NEW_TOKENS for k, v in times.items()}}
    try:
        import transformers

        result["transformers"] = transformers.__version__
    except ImportError:
        pass
    print("| system | params | greedy tok/s | beam-5 tok/s |\n|---|---|---|---|")
    for name, (params, _, _) in systems.items():
        tps = result["tokens_per_s"]
        print(f"| {name} | {params / 1e6:.2f} M | {tps[name + '/greedy']:.0f} | {tps[name + '/beam5']:.0f} |")
    if "hf-bart" in systems:
        tps = result["tokens_per_s"]
        for kind in ("greedy", "beam5"):
            print(f"{kind}: hybridformer / hf-bart = {tps['hybridformer/' + kind] / tps['hf-bart/' + kind]:.2f}x")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
