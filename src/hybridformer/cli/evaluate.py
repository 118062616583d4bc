"""``hybridformer evaluate``: score a checkpoint on a source/reference pair."""

from __future__ import annotations

import json

import typer

from ..evaluate import evaluate
from .generate import (
    BATCH_TOKENS,
    BEAM,
    CHECKPOINTS,
    COMBINE,
    DEVICE,
    LENPEN,
    MAX_LEN_A,
    MAX_LEN_B,
    NO_REPEAT,
    WEIGHTS,
    parse_weights,
)


def evaluate_cmd(
    checkpoints: list[str] = CHECKPOINTS,
    src: str = typer.Option(None, "--src", help="Source lines (seq2seq); omit for a language model."),
    ref: str = typer.Option(..., "--ref", help="Reference lines, paired with --src line by line."),
    metric: str = typer.Option("bleu", "--metric", "-m", help="bleu | chrf | rouge | ppl"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
    context: int = typer.Option(256, "--context", help="ppl of a language model: tokens per scored block."),
    beam: int = BEAM,
    lenpen: float = LENPEN,
    max_len_a: float = MAX_LEN_A,
    max_len_b: int = MAX_LEN_B,
    no_repeat_ngram: int = NO_REPEAT,
    batch_tokens: int = BATCH_TOKENS,
    device: str = DEVICE,
    weights: str = WEIGHTS,
    combine: str = COMBINE,
) -> None:
    """Print the score and its signature (sacreBLEU's for bleu/chrf).

    bleu / chrf / rouge decode --src with beam search and compare with --ref; ppl scores --ref
    under teacher forcing (perplexity, bits per token and per character).

    Examples:
      hybridformer evaluate runs/mt/checkpoints/best --src test.en --ref test.de --metric bleu
      hybridformer evaluate runs/lm/checkpoints/best --ref valid.txt --metric ppl --json
      hybridformer evaluate runs/a/checkpoints/best runs/b/checkpoints/best --src test.en --ref test.de   # an ensemble
    """
    decoding = {"beam": beam, "lenpen": lenpen, "max_len_a": max_len_a, "max_len_b": max_len_b,
                "no_repeat_ngram": no_repeat_ngram, "batch_tokens": batch_tokens}
    if metric == "ppl":
        decoding = {"batch_tokens": batch_tokens}
    result = evaluate(checkpoints, src, ref, metric=metric, context=context, device=device,
                      weights=parse_weights(weights), combine=combine, **decoding)
    typer.echo(json.dumps(result.as_dict()) if as_json else str(result))
