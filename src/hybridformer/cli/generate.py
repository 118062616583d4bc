"""``hybridformer generate``: decode text with a checkpoint, one output line per input line."""

from __future__ import annotations

import typer

from .options import parse_weights
from .progress import LineProgress, sigint_deferred

# Decoding options, shared with ``hybridformer evaluate``.
BEAM = typer.Option(None, "--beam", help="Beam size (default 5; 1 = greedy).", min=1)
LENPEN = typer.Option(1.0, "--lenpen", help="Length penalty α: rank by log-prob / length^α (0 = raw log-prob).")
MAX_LEN_A = typer.Option(None, "--max-len-a", help="Output budget a·src_len+b, a (default 1.2 seq2seq, 0 LM).")
MAX_LEN_B = typer.Option(None, "--max-len-b", help="Output budget a·src_len+b, b (default 10 seq2seq, 100 LM); "
                         "at most the model's max_positions new tokens.")
NO_REPEAT = typer.Option(0, "--no-repeat-ngram", help="Never repeat an n-gram of this size (0 = off).")
BATCH_TOKENS = typer.Option(4096, "--batch-tokens", help="Padded input tokens × beam per batch.")
DEVICE = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda.")
ENGINE = typer.Option("torch", "--engine", help="torch, or ct2 (CTranslate2: CKPT may be an export; a checkpoint "
                      "is exported once into CKPT.ct2-<quantization> beside it).")
QUANTIZATION = typer.Option(None, "--quantization", help="--engine ct2: float32 | int8 | int8_float32 | bfloat16 "
                            "(default float32, or what the export holds).")
CHECKPOINTS = typer.Argument(..., help="Checkpoint directory; several = an ensemble (same vocabulary).")
WEIGHTS = typer.Option(None, "--weights", help="Ensemble weights: 0.7,0.3 or @FILE from tune-weights (default: equal).")
ADAPTER = typer.Option(None, "--adapter", help="LoRA adapter directory (PEFT format: a LoRA run's checkpoint, or "
                       "peft's save_pretrained) folded into the checkpoint.")
COMPILE = typer.Option(False, "--compile", help="torch engine: compile the decoding step (torch.compile; pays on "
                       "long outputs, costs compile time at the start: docs/decoding.md).")
COMBINE = typer.Option("prob", "--combine", help="Ensemble: mean of probabilities (prob) or of log-probs (log_prob).")


def generate_cmd(
    checkpoints: list[str] = CHECKPOINTS,
    input: str = typer.Option(..., "--input", "-i", help="Text file with one input per line; - reads stdin."),
    beam: int = BEAM,
    lenpen: float = LENPEN,
    sample: bool = typer.Option(False, "--sample", help="Sample instead of searching."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature (> 0)."),
    top_k: int = typer.Option(0, "--top-k", help="Sample among the k most likely tokens (0 = all)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Sample from the smallest set holding probability p."),
    seed: int = typer.Option(None, "--seed", help="Seed for sampling (reproducible outputs)."),
    max_len_a: float = MAX_LEN_A,
    max_len_b: int = MAX_LEN_B,
    no_repeat_ngram: int = NO_REPEAT,
    at_budget: str = typer.Option("eos", "--at-budget", help="Beam search at the length budget: eos = force EOS, "
                                  "scored (fairseq); stop = end the hypotheses there, the budget counting EOS "
                                  "(transformers' max_new_tokens)."),
    batch_tokens: int = BATCH_TOKENS,
    device: str = DEVICE,
    engine: str = ENGINE,
    quantization: str = QUANTIZATION,
    weights: str = WEIGHTS,
    combine: str = COMBINE,
    chat: bool = typer.Option(False, "--chat", help="Wrap each line as a user message in the model's chat template."),
    adapter: str = ADAPTER,
    compile_: bool = COMPILE,
    progress: bool = typer.Option(None, "--progress/--no-progress", help="Progress bar on stderr (default: when "
                                  "stderr is a terminal and stdout is not)."),
) -> None:
    """Translate / summarize / continue each line of --input; outputs stream to stdout in input order.

    A sequence-to-sequence checkpoint maps each line to its output; a language model continues each
    line as a prompt (only the continuation is printed).

    Examples:
      hybridformer generate runs/mt/checkpoints/best --input test.en --beam 5 --lenpen 1.0 > test.hyp
      echo "The quick brown fox" | hybridformer generate runs/lm/checkpoints/best --input - --sample --top-p 0.9
      hybridformer generate runs/a/checkpoints/best runs/b/checkpoints/best --input test.en   # an ensemble
      hybridformer generate runs/mt/checkpoints/best --input test.en --engine ct2 --quantization int8   # CTranslate2
      echo "What is the capital of France?" | hybridformer generate smollm2 --input - --beam 1 --chat
      hybridformer generate smollm2 --adapter runs/lora/checkpoints/best --input prompts.txt --chat   # + LoRA
    """
    from ..data.text import iter_lines
    from ..generation import generate

    outputs = generate(
        checkpoints, iter_lines(input, require=True), device=device, engine=engine, quantization=quantization,
        beam=beam, lenpen=lenpen, sample=sample,
        temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, max_len_a=max_len_a, max_len_b=max_len_b,
        no_repeat_ngram=no_repeat_ngram, at_budget=at_budget, batch_tokens=batch_tokens,
        weights=parse_weights(weights), combine=combine,
        chat=chat, adapter=adapter, compile=compile_,
    )
    written = 0
    with LineProgress(input, enabled=progress) as bar:
        try:
            for line in outputs:
                with sigint_deferred():  # the count below is exact: Ctrl-C lands between lines, not inside one
                    typer.echo(line)  # click flushes each line: output streams
                    written += 1
                bar.advance()
        except KeyboardInterrupt:
            bar.stop()
            typer.echo(f"interrupted: only the first {written} output line(s) were written (one per input line); "
                       "the output is incomplete", err=True)
            raise typer.Exit(130) from None
