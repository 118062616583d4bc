"""``hybridformer evaluate``: score a checkpoint on a source/reference pair, or a classifier on labeled documents."""

from __future__ import annotations

import json

import typer

from ..errors import ConfigError
from .generate import (
    ADAPTER,
    BATCH_TOKENS,
    BEAM,
    CHECKPOINTS,
    COMBINE,
    DEVICE,
    ENGINE,
    LENPEN,
    MAX_LEN_A,
    MAX_LEN_B,
    NO_REPEAT,
    QUANTIZATION,
    WEIGHTS,
)
from .options import parse_weights
from .progress import PROGRESS, Bar, stop_signals


def evaluate_cmd(
    checkpoints: list[str] = CHECKPOINTS,
    src: str = typer.Option(None, "--src", help="Source lines (seq2seq); omit for a language model."),
    ref: str = typer.Option(None, "--ref", help="Reference lines, paired with --src line by line."),
    labeled: str = typer.Option(None, "--labeled", help="Classifier: labeled documents, a JSONL file or a "
                                "directory/.tar.gz of <split>/<label>/*.txt; reports accuracy."),
    split: str = typer.Option("test", "--split", help="--labeled folders: the split folder to score."),
    limit: int = typer.Option(None, "--limit", help="--labeled: score a fixed random subset of N documents."),
    seed: int = typer.Option(0, "--seed", help="--labeled --limit: the subset's seed."),
    text_field: str = typer.Option("text", "--text-field", help="--labeled JSONL: the text field."),
    label_field: str = typer.Option("label", "--label-field", help="--labeled JSONL: the label field."),
    metric: str = typer.Option(None, "--metric", "-m", help="bleu | chrf | rouge | ppl | accuracy (default: bleu, "
                               "or accuracy with --labeled)"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
    tokenize: str = typer.Option(None, "--tokenize", help="bleu: sacreBLEU's tokenizer (13a default, intl, "
                                 "char, none, ...) or moses-lc: lowercased Moses tokens, scored as fairseq "
                                 "does (papers' Multi30k numbers); higher than sacreBLEU, not comparable."),
    lang: str = typer.Option("en", "--lang", help="--tokenize moses-lc: the target language's Moses rules "
                             "(de for English-German)."),
    context: int = typer.Option(256, "--context", help="ppl of a language model: tokens per scored block."),
    beam: int = BEAM,
    lenpen: float = LENPEN,
    max_len_a: float = MAX_LEN_A,
    max_len_b: int = MAX_LEN_B,
    no_repeat_ngram: int = NO_REPEAT,
    batch_tokens: int = BATCH_TOKENS,
    device: str = DEVICE,
    engine: str = ENGINE,
    quantization: str = QUANTIZATION,
    weights: str = WEIGHTS,
    combine: str = COMBINE,
    adapter: str = ADAPTER,
    progress: bool = PROGRESS,
) -> None:
    """Print the score and its signature (sacreBLEU's for bleu/chrf).

    Stopped by Ctrl-C or SIGTERM (e.g. `timeout`) while scoring, it prints the score over what was scored,
    marked PARTIAL (JSON: "partial"), says so on stderr and exits 130 / 143.

    bleu / chrf / rouge decode --src with beam search and compare with --ref; ppl scores --ref
    under teacher forcing (perplexity, bits per token and per character). accuracy classifies
    --labeled documents with an encoder_classifier (several checkpoints average probabilities).

    Examples:
      hybridformer evaluate runs/mt/checkpoints/best --src test.en --ref test.de --metric bleu
      hybridformer evaluate runs/lm/checkpoints/best --ref valid.txt --metric ppl --json
      hybridformer evaluate runs/a/checkpoints/best runs/b/checkpoints/best --src test.en --ref test.de   # an ensemble
      hybridformer evaluate runs/mt/checkpoints/best --src test.en --ref test.de --tokenize moses-lc --lang de
      hybridformer evaluate runs/imdb/checkpoints/best --labeled aclImdb_v1.tar.gz --split test --limit 2000
      hybridformer evaluate smollm2 --adapter runs/lora/checkpoints/best --ref valid.txt --metric ppl   # + LoRA
    """
    from ..classify import evaluate_classifier
    from ..evaluate import EvaluationInterrupted, evaluate

    if labeled is not None or metric == "accuracy":
        if labeled is None or src is not None or ref is not None:
            raise ConfigError("accuracy scores a classifier on --labeled documents; drop --src/--ref")
        result = evaluate_classifier(checkpoints, labeled, split=split, text_field=text_field,
                                     label_field=label_field, limit=limit, seed=seed, batch_tokens=batch_tokens,
                                     device=device, weights=parse_weights(weights))
        typer.echo(json.dumps(result.as_dict()) if as_json else str(result))
        return
    if ref is None:
        raise ConfigError("evaluate needs --ref (text metrics) or --labeled (a classifier's accuracy)")
    metric = metric or "bleu"
    decoding = {"beam": beam, "lenpen": lenpen, "max_len_a": max_len_a, "max_len_b": max_len_b,
                "no_repeat_ngram": no_repeat_ngram, "batch_tokens": batch_tokens}
    if metric == "ppl":
        decoding = {"batch_tokens": batch_tokens}
    with stop_signals() as stop, Bar("lines" if src is not None else "blocks", enabled=progress) as bar:
        try:
            result = evaluate(checkpoints, src, ref, metric=metric, context=context, device=device, engine=engine,
                              quantization=quantization, weights=parse_weights(weights), combine=combine,
                              tokenize=tokenize, lang=lang, adapter=adapter, progress=bar.update, **decoding)
        except KeyboardInterrupt as exc:
            bar.stop()
            partial = exc.result if isinstance(exc, EvaluationInterrupted) else None
            if partial is not None:
                typer.echo(json.dumps(partial.as_dict()) if as_json else str(partial))
            said = f"the score above is partial, over {partial.partial}" if partial else "nothing was scored"
            typer.echo(f"interrupted ({stop.name}): {said}", err=True)
            raise typer.Exit(stop.status) from None
    typer.echo(json.dumps(result.as_dict()) if as_json else str(result))
