"""How int8 decoding steps fare with each rule for the activations' scale: a language model's greedy continuation in
fp32, then the same tokens fed to the int8 model one step at a time (``--rows`` rows a step, prompts taken from
``--text``); top-1 agreement with fp32 at every step and the mean NLL of fp32's tokens, per rule:

- ``default``: ``Int8Linear`` as shipped (up to 8 rows share one scale; more share one while their peaks lie within
  2× of each other, else one scale per row);
- ``per-row``: one scale per row always; ``per-call``: one scale per call always.

    OMP_NUM_THREADS=1 python benchmarks/int8_row_scales.py CKPT --text qmsum.txt --rows 16
"""

from __future__ import annotations

import argparse
import copy

import torch

from hybridformer import load_checkpoint
from hybridformer.compress import quantize_model
from hybridformer.data.tokenizer import encode
from hybridformer.decoding import ModelScorer, greedy_search
from hybridformer.quantized import Int8Linear

SHIPPED = Int8Linear.forward


def per_row(self: Int8Linear, x: torch.Tensor) -> torch.Tensor:
    rows = x.float()
    return self.multiply_rows(rows, rows.abs().amax(-1, keepdim=True)).to(x.dtype)


def per_call(self: Int8Linear, x: torch.Tensor) -> torch.Tensor:
    return self.multiply(x.float()).to(x.dtype)


RULES = {"default": SHIPPED, "per-row": per_row, "per-call": per_call}


def teacher_forced(scorer: ModelScorer, prompts: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probs (rows, steps, vocab) of each step, fed ``tokens`` one column at a time after the prompts."""
    state = scorer.init_state(None)
    log_probs, state = scorer.step(state, prompts)
    steps = [log_probs]
    for column in range(tokens.shape[1] - 1):
        log_probs, state = scorer.step(state, tokens[:, column : column + 1])
        steps.append(log_probs)
    return torch.stack(steps, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--text", required=True, help="UTF-8 text the prompts are cut from")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--steps", type=int, default=48)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ckpt = load_checkpoint(args.checkpoint)
    with open(args.text, encoding="utf-8") as file:
        ids = encode(ckpt.tokenizer, [file.read()])[0]
    stride = len(ids) // args.rows
    if stride < args.prompt_len:
        parser.error(f"{args.text}: {len(ids)} tokens, too few for {args.rows} prompts of {args.prompt_len}")
    prompts = torch.tensor([ids[r * stride : r * stride + args.prompt_len] for r in range(args.rows)])
    reference = ModelScorer(ckpt.model)
    tokens = torch.tensor(greedy_search(reference, reference.init_state(None), prompts, eos_id=-1,  # no id ends a row
                                        max_new_tokens=args.steps))
    expected = teacher_forced(reference, prompts, tokens)
    model, _ = quantize_model(copy.deepcopy(ckpt.model), ckpt.config, "int8")
    nll = float(-expected.gather(-1, tokens[..., None]).mean())
    print(f"{args.rows} rows × {args.steps} steps; fp32 NLL of its own tokens {nll:.4f}")
    for name, forward in RULES.items():
        Int8Linear.forward = forward
        got = teacher_forced(ModelScorer(model), prompts, tokens)
        agreement = float((got.argmax(-1) == expected.argmax(-1)).float().mean())
        print(f"{name}: top-1 agreement with fp32 {agreement:.3f}, NLL of fp32's tokens "
              f"{float(-got.gather(-1, tokens[..., None]).mean()):.4f}")
    Int8Linear.forward = SHIPPED


if __name__ == "__main__":
    main()
